"""Output folders and files: checked before any work, written beside their place, swapped in whole.

Every command that writes an output set goes through here:

- :func:`check_output_folder` / :func:`check_output_file` run first, before a model loads: ``--out`` must not be a
  file, must be writable (a real probe, since permission bits say yes on read-only mounts and for root), and, for
  commands whose folder is their own, must hold nothing but an earlier output of the same command.
- :func:`output_set` yields an empty staging folder beside ``--out`` (same file system) and, when the block ends,
  puts it in ``--out``'s place in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``; a plain ``rename`` when
  ``--out`` is new). ``keep=True`` first links in what the folder already holds (exports merge splits; an
  evaluation keeps its records), so writers there must replace files, never rewrite them in place: use
  :func:`write_file` / :func:`write_image`, which always make a new file.
- A failure, or a SIGKILL, before the swap leaves the old set untouched; the next run removes the dead run's
  staging folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fnmatch
import glob
import io
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from addp_agent.errors import UserError

Owns = Collection[str] | Callable[[str], bool]
_STAGING = re.compile(r"\.addp-(?P<kind>new|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def check_output_folder(out: Path, owns: Owns | None = None, command: str = "", flag: str = "--out") -> None:
    """:class:`UserError` unless ``out`` can become an output folder.

    ``owns``: the names (glob patterns, or a predicate) of the command's own files; given, an existing ``out`` may
    hold only those (an earlier output the new one replaces), so a folder of other files is never swapped away.
    ``flag``: the option that names it, in the message.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give a folder for {flag}")
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise UserError(f"{out}: is the current folder or holds it, and an output replaces its whole folder; give a "
                        f"new folder for {flag}")
    if out.is_dir():
        _probe(out, out, flag)
        if owns is not None:
            foreign = sorted(p.name for p in out.iterdir() if not _STAGING.search(p.name) and not _owned(p.name, owns))
            if foreign:
                shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
                what = f"`{command}` output" if command else "output of this command"
                raise UserError(f"{out}: holds files that are not an earlier {what} ({shown}); give a new or empty "
                                f"folder for {flag}")
    _probe(_existing(out.absolute().parent), out, flag)


def check_run_folder(out: Path, marker: str, command: str, owns: Owns = (), flag: str = "--out") -> None:
    """:func:`check_output_folder` for a resumable run: a folder holding ``marker`` (the run's own settings file)
    is resumed; any other may hold only ``owns`` (default: nothing), since the run writes among the rest."""
    resumed = (Path(out) / marker).is_file()
    check_output_folder(out, None if resumed else owns, command, flag)


def check_output_file(out: Path, flag: str = "--out") -> None:
    """:class:`UserError` unless ``out`` can be written as one file (its folder writable, not a folder itself);
    ``flag``: the option that names it, in the message."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a folder, not a writable file path; give a file path for {flag}")
    _probe(_existing(out.absolute().parent), out, flag)


@contextmanager
def output_set(out: Path, *, keep: bool = False, owns: Owns | None = None, command: str = "",
               flag: str = "--out") -> Iterator[Path]:
    """A staging folder that replaces ``out`` in one step when the block ends without an error.

    ``keep=False``: the set is what the block writes (``owns`` as in :func:`check_output_folder`). ``keep=True``:
    the staging folder starts with hard links to everything in ``out`` except the names ``owns`` matches (which the
    block writes anew); write there only with :func:`write_file` and friends. ``flag``: the option naming ``out``.
    """
    out = Path(out).resolve() if Path(out).is_symlink() else Path(out)  # write where a link points
    mine = None if keep else owns
    check_output_folder(out, mine, command, flag)
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    staging = _sibling(out, "new")
    staging.mkdir()
    try:
        if keep and out.is_dir():
            _link_tree(out, staging, owns)
        yield staging
        if mine is not None:
            check_output_folder(out, mine, command, flag)  # nothing else arrived in the meantime
        _swap(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_file(path: Path, data: bytes | str) -> Path:
    """Write ``path`` as a new file: a temporary file beside it, then ``os.replace`` (never a half-written file,
    never a change to another link of the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_image(image: Any, path: Path, format: str = "PNG", **options: Any) -> Path:
    """Save a PIL image (or an array ``Image.fromarray`` takes) with :func:`write_file`."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format=format, **options)
    return write_file(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------------- helpers
def _owned(name: str, owns: Owns) -> bool:
    if callable(owns):
        return bool(owns(name))
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in owns)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path, out: Path, flag: str = "--out") -> None:
    """Create and remove a folder in ``folder``: permission bits say yes on read-only mounts and for root."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".addp-probe-", dir=folder))
    except OSError as error:
        where = "" if folder == out else f" ({folder} is not writable)"
        raise UserError(f"{out}: cannot write there{where}: {error.strerror or error}; give a writable {flag}") \
            from None


def _sibling(out: Path, kind: str) -> Path:
    return out.absolute().parent / f".{out.name[:150]}.addp-{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _clean_stale(out: Path) -> None:
    """Remove staging folders of runs that died before their swap; put back an old set a fallback swap left."""
    parent, prefix = out.absolute().parent, f".{out.name[:150]}.addp-"
    for path in parent.glob(f"{glob.escape(prefix)}*"):
        match = _STAGING.search(path.name)
        if match is None or path.name[: match.start()] != prefix[:-len(".addp-")] or process_alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not out.exists():
            os.rename(path, out)
        else:
            shutil.rmtree(path, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts; another user's counts too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link_tree(source: Path, target: Path, owns: Owns | None) -> None:
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not supported
            shutil.copy2(src, dst)

    def skip(folder: str, names: list[str]) -> list[str]:
        top = Path(folder) == source
        return [n for n in names if _STAGING.search(n) or (top and owns is not None and _owned(n, owns))]

    shutil.copytree(source, target, symlinks=True, copy_function=link, ignore=skip, dirs_exist_ok=True)


def _swap(staging: Path, out: Path) -> None:
    """Put ``staging`` at ``out``; what was there ends up at ``staging`` (removed by the caller)."""
    if not out.exists():
        try:
            os.rename(staging, out)
            return
        except OSError:
            if not out.exists():
                raise
    if _exchange(staging, out):
        return
    old = _sibling(out, "old")  # no atomic exchange here: two renames, undone by _clean_stale after a crash
    os.rename(out, old)
    os.rename(staging, out)
    os.rename(old, staging)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ≥ 3.15); False where the system cannot."""
    libc = _libc()
    if libc is None:
        return False
    result = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system or kernel cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True) if name else None
        except OSError:
            libc = None
        if libc is not None and hasattr(libc, "renameat2"):
            libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            libc.renameat2.restype = ctypes.c_int
        else:
            libc = None
        _LIBC.append(libc)
    return _LIBC[0]
