"""Training-set caches are reused only for the meta they were made from, and a broken file is never trusted."""

import pytest
import torch

from addp_agent.train.cache import load_cached, store_cached


def test_cache_round_trip_stale_meta_and_broken_file(tmp_path):
    cache = tmp_path / "sub" / "set.pt"
    assert load_cached(cache, {"n": 2}) is None and load_cached(None, {"n": 2}) is None
    store_cached(cache, {"n": 2}, {"images": torch.arange(4)})
    assert torch.equal(load_cached(cache, {"n": 2})["images"], torch.arange(4))
    assert load_cached(cache, {"n": 3}) is None  # made from other settings: rebuilt, not reused
    assert [p.name for p in cache.parent.iterdir()] == ["set.pt"]  # written whole: no staging file left
    cache.write_bytes(b"not a torch file")
    assert load_cached(cache, {"n": 2}) is None
    store_cached(None, {"n": 2}, {"images": torch.arange(4)})  # no cache: nothing written


def test_a_failed_write_leaves_no_staging_file(tmp_path):
    cache = tmp_path / "set.pt"
    cache.mkdir()  # a folder where the cache should go: the rename fails
    with pytest.raises(OSError):
        store_cached(cache, {"n": 2}, {"images": torch.arange(4)})
    assert [p.name for p in tmp_path.iterdir()] == ["set.pt"]
