"""Output sets: checked before any work, staged beside ``--out`` and swapped in whole (addp_agent/outputs_io.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from addp_agent import outputs_io
from addp_agent.errors import UserError
from addp_agent.outputs_io import check_output_file, check_output_folder, output_set, write_file

SET = ("a.txt", "b.txt")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".addp-" in p.name]


def test_new_folder_gets_the_whole_set_and_nothing_is_left_beside_it(tmp_path):
    with output_set(tmp_path / "out", owns=SET) as staging:
        write_file(staging / "a.txt", "1")
        write_file(staging / "b.txt", "1")
    assert names(tmp_path / "out") == ["a.txt", "b.txt"] and leftovers(tmp_path) == []


def test_a_second_set_replaces_the_first_whole(tmp_path):
    out = tmp_path / "out"
    for text, files in (("old", SET), ("new", ("a.txt",))):
        with output_set(out, owns=SET) as staging:
            for name in files:
                write_file(staging / name, text)
    assert names(out) == ["a.txt"] and (out / "a.txt").read_text() == "new"  # the old b.txt does not linger


def test_failure_midway_leaves_the_old_set_untouched(tmp_path):
    out = tmp_path / "out"
    with output_set(out, owns=SET) as staging:
        write_file(staging / "a.txt", "old")
        write_file(staging / "b.txt", "old")
    with pytest.raises(RuntimeError), output_set(out, owns=SET) as staging:
        write_file(staging / "a.txt", "new")
        raise RuntimeError("disk full halfway")
    assert {n: (out / n).read_text() for n in names(out)} == {"a.txt": "old", "b.txt": "old"}
    assert leftovers(tmp_path) == []


def test_kept_files_are_links_and_rewriting_them_never_changes_the_old_set(tmp_path):
    out = tmp_path / "export"
    (out / "images").mkdir(parents=True)
    (out / "images" / "0.png").write_text("old image")
    (out / "refs.json").write_text("old refs")
    old_inodes = {p: p.stat().st_ino for p in (out / "images" / "0.png", out / "refs.json")}
    seen = {}
    with output_set(out, keep=True) as staging:
        assert (staging / "images" / "0.png").stat().st_ino == old_inodes[out / "images" / "0.png"]  # a link
        write_file(staging / "refs.json", "new refs")
        seen["old refs during the run"] = (out / "refs.json").read_text()
    assert seen["old refs during the run"] == "old refs"
    assert (out / "refs.json").read_text() == "new refs" and (out / "images" / "0.png").read_text() == "old image"


def test_owned_names_are_not_kept_when_keeping_the_rest(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "records.jsonl").write_text("r")
    (out / "gallery.png").write_text("stale")
    with output_set(out, keep=True, owns=("gallery.png", "metrics.json")) as staging:
        write_file(staging / "metrics.json", "{}")
    assert names(out) == ["metrics.json", "records.jsonl"]


def test_folder_of_other_files_is_refused_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files that are not an earlier `addp segment` output \(notes.txt\)"):
        check_output_folder(tmp_path, SET, "addp segment")
    with pytest.raises(UserError, match="notes.txt"), output_set(tmp_path, owns=SET, command="addp segment"):
        pass
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="exists and is not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(UserError, match="cannot write there"):
        check_output_folder(tmp_path / "file" / "below")
    with pytest.raises(UserError, match="not a writable file path"):
        check_output_file(tmp_path)


def test_out_on_a_read_only_file_system_is_refused():
    with pytest.raises(UserError, match="cannot write there"):
        check_output_folder(Path("/sys/addp-out"))  # sysfs: creating anything fails, for root too


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (the CLI test drops privileges)")
def test_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError, match="cannot write there"):
            check_output_folder(folder)
    finally:
        folder.chmod(0o755)


def test_staging_of_a_dead_run_is_removed_and_a_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / ".out.addp-new-999999999-0123abcd"  # no such process
    live = tmp_path / f".out.addp-new-{os.getpid()}-89abcdef"
    other = tmp_path / ".other.addp-new-999999999-0123abcd"  # another output's
    for folder in (dead, live, other):
        folder.mkdir()
    with output_set(out, owns=SET) as staging:
        write_file(staging / "a.txt", "1")
    assert sorted(leftovers(tmp_path)) == sorted([live.name, other.name])


def test_without_an_atomic_exchange_the_two_renames_still_swap_and_a_crash_between_is_undone(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with output_set(out, owns=SET) as staging:
        write_file(staging / "a.txt", "old")
    monkeypatch.setattr(outputs_io, "_exchange", lambda a, b: False)
    with output_set(out, owns=SET) as staging:
        write_file(staging / "a.txt", "new")
    assert (out / "a.txt").read_text() == "new" and leftovers(tmp_path) == []
    # a run killed between its two renames: out is gone, the old set waits under its hidden name
    stranded = tmp_path / ".out.addp-old-999999999-0123abcd"
    out.rename(stranded)
    check_output_folder(out, SET)
    with output_set(out, owns=SET) as staging:
        assert (out / "a.txt").read_text() == "new"  # put back before anything else
        write_file(staging / "a.txt", "newer")
    assert (out / "a.txt").read_text() == "newer" and leftovers(tmp_path) == []


def test_a_symlinked_out_is_written_where_it_points(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with output_set(tmp_path / "link", owns=SET) as staging:
        write_file(staging / "a.txt", "1")
    assert (tmp_path / "link").is_symlink() and (real / "a.txt").read_text() == "1"


def test_write_file_replaces_without_touching_other_links(tmp_path):
    first = tmp_path / "a.txt"
    first.write_text("old")
    os.link(first, tmp_path / "b.txt")
    write_file(first, "new")
    assert first.read_text() == "new" and (tmp_path / "b.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("given", ["", ".", "..", "/"])
def test_the_current_folder_or_one_holding_it_is_refused(given, tmp_path, monkeypatch):
    """An output replaces its whole folder; `--out .` (or `''`, a parent, the root) would swap away the folder the
    command runs in. Refused before anything is written, and the folder's files stay."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("keep")
    monkeypatch.chdir(work)
    with pytest.raises(UserError, match="is the current folder or holds it"), output_set(Path(given)):
        pytest.fail("the block ran")
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]
