"""Per-client session stores: isolation between clients, per-client limits, a global memory budget."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from addp_agent.data.shapes import generate_sample
from addp_agent.tools.functions import SegmentationTools
from addp_agent.tools.inputs import ImagePolicy
from addp_agent.tools.store import MiB, NotFound, SessionStore, StoreFull

pytestmark = pytest.mark.usefixtures("one_thread")


class Held:
    """A stand-in session of a given size (the store only asks for ``rounds`` and ``nbytes``)."""

    rounds = [object()]

    def __init__(self, nbytes: int = 0) -> None:
        self.size = nbytes

    def nbytes(self) -> int:
        return self.size


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("images")
    Image.fromarray(generate_sample("val", 5).image).save(path / "scene.png")
    return path


@pytest.fixture()
def tools(pipe, folder):
    return SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]), store=SessionStore(max_sessions=3))


def segment(tools, client):
    out = tools.call("segment", {"image": "scene.png", "expression": "the circle", "steps": 1}, client=client)
    assert not out.is_error, out.text()
    return out.result.mask_id


def unknown_message(message: str) -> str:
    return re.sub(r"m-[0-9a-f]{12}-r\d+", "<mask_id>", message)


def test_another_clients_mask_id_is_not_found_like_an_unknown_one(tools):
    mine = segment(tools, "client-a")
    for name, arguments in [("get_mask", {"mask_id": mine}), ("trajectory", {"mask_id": mine}),
                            ("refine", {"mask_id": mine, "correction": "the square"})]:
        theirs = tools.call(name, arguments, client="client-b")
        unknown = tools.call(name, {**arguments, "mask_id": "m-0123456789ab-r1"}, client="client-b")
        assert theirs.result.error == unknown.result.error == "not_found"
        assert unknown_message(theirs.result.message) == unknown_message(unknown.result.message)
    assert not tools.call("get_mask", {"mask_id": mine}, client="client-a").is_error


def test_a_busy_client_evicts_only_its_own_sessions(tools):
    kept = segment(tools, "client-a")
    theirs = [segment(tools, "client-b") for _ in range(5)]  # over B's limit of 3
    assert not tools.call("get_mask", {"mask_id": kept}, client="client-a").is_error
    assert [tools.call("get_mask", {"mask_id": m}, client="client-b").is_error for m in theirs] == [True, True] + \
        [False] * 3
    assert tools.store.usage()["sessions"] == 4


def test_refine_grows_the_session_and_its_bytes_are_counted(tools):
    first = segment(tools, "client-a")
    before = tools.store.usage()["bytes"]
    refined = tools.call("refine", {"mask_id": first, "correction": "the square"}, client="client-a")
    assert not refined.is_error and tools.store.usage()["bytes"] > before > 0


def test_per_client_bytes_evict_the_clients_least_recently_used():
    store = SessionStore(max_sessions=100, client_bytes=10 * MiB, total_bytes=100 * MiB)
    ids = [store.add(Held(4 * MiB), client="a") for _ in range(3)]  # 12 MiB > 10: the first goes
    with pytest.raises(NotFound):
        store.lookup(f"m-{ids[0]}-r1", "a")
    assert store.usage()["bytes"] == 8 * MiB


def test_global_budget_full_refuses_a_new_client_and_never_evicts_others():
    store = SessionStore(max_sessions=100, client_bytes=6 * MiB, total_bytes=10 * MiB)
    a = store.add(Held(5 * MiB), client="a")
    b = store.add(Held(5 * MiB), client="b")
    with pytest.raises(StoreFull, match="session memory"):
        store.check_room("c")
    with pytest.raises(StoreFull, match="session memory"):
        store.add(Held(1 * MiB), client="c")
    b2 = store.add(Held(5 * MiB), client="b")  # b makes room from its own sessions
    store.lookup(f"m-{a}-r1", "a")
    store.lookup(f"m-{b2}-r1", "b")
    with pytest.raises(NotFound):
        store.lookup(f"m-{b}-r1", "b")
    assert store.usage()["bytes"] == 10 * MiB


def test_session_larger_than_a_clients_budget_is_refused():
    store = SessionStore(client_bytes=1 * MiB)
    with pytest.raises(StoreFull, match="over the 1 MiB"):
        store.add(Held(2 * MiB))


def test_client_count_is_bounded_and_a_client_that_leaves_frees_its_place():
    now = [0.0]
    store = SessionStore(max_clients=2, ttl_s=10, clock=lambda: now[0])
    store.add(Held(), client="a")
    store.add(Held(), client="b")
    with pytest.raises(StoreFull, match="at most 2 clients"):
        store.add(Held(), client="c")
    store.drop_client("a")
    store.add(Held(), client="c")
    now[0] = 11.0  # b and c expire
    store.add(Held(), client="d")
    assert store.usage()["clients"] == 1


def test_full_store_is_a_refused_tool_error_before_any_work(pipe, folder):
    store = SessionStore(max_clients=1)
    tools = SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]), store=store)
    segment(tools, "a")
    out = tools.call("segment", {"image": "scene.png", "expression": "the circle"}, client="b")
    assert out.result.error == "refused" and "at most 1 clients" in out.result.message


def test_session_bytes_count_image_masks_and_encodings(pipe):
    from addp_agent.agent import LoopConfig, Session

    image = np.zeros((40, 50, 3), np.uint8)
    session = Session(pipe, image, "the circle", LoopConfig(max_rounds=1, num_inference_steps=1))
    empty = session.nbytes()
    session.run()
    grown = session.nbytes()
    masks = sum(r.result.mask.nbytes + r.result.soft.nbytes for r in session.rounds)
    assert empty == image.nbytes and grown >= empty + masks + session.encoded.prompt_embeds.nbytes
