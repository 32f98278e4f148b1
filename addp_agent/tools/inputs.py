"""Images from tool arguments: a path under allowed folders, a data URL, base64, or a URL when allowed."""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from addp_agent.errors import UserError
from addp_agent.extras import extra_imports
from addp_agent.images import load_image_bytes

_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
MAX_PATH_CHARS = 1024  # longer paths are refused before any file system call (Linux allows 4096)


class Refused(UserError):
    """An input the server's policy does not allow (path outside the allowed folders, URL when URLs are off)."""


@dataclass(frozen=True)
class ImagePolicy:
    """Where images may come from. No folders: file paths are refused. URLs: off unless ``allow_urls``."""

    allowed_dirs: tuple[Path, ...] = field(default_factory=tuple)
    allow_urls: bool = False
    max_bytes: int = 25_000_000
    url_timeout_s: float = 20.0

    @classmethod
    def create(cls, allowed_dirs=(), allow_urls: bool = False) -> ImagePolicy:
        return cls(tuple(Path(d).expanduser().resolve() for d in allowed_dirs), allow_urls)


def load_tool_image(value: str, policy: ImagePolicy) -> np.ndarray:
    """Decode an image argument to RGB uint8 according to ``policy``."""
    text = value.strip()
    if not text:
        raise UserError("image is empty: give a file path, a data URL or base64 image bytes")
    if text[:5].lower() == "data:":
        return _from_data_url(text, policy)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        return _from_url(text, policy)
    if len(text) >= 64 and _BASE64.match(text) and (data := _b64decode(text)):
        _check_size(data, policy, "base64 image")
        return load_image_bytes(data, "base64 image")
    return load_image_bytes(read_file(resolve_path(text, policy), policy, text), source=shown(text))


def shown(text: str, limit: int = 60) -> str:
    """A client's string as it may appear in a message or log: :func:`printable`, quoted."""
    return f"'{printable(text, limit)}'"


def printable(text: str, limit: int = 60) -> str:
    """``text`` with control and invalid characters replaced by '?', at most ``limit`` characters (middle elided)."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    if len(clean) > limit:
        clean = clean[:limit // 2] + "…" + clean[-(limit // 2 - 1):]
    return clean


def resolve_path(value: str, policy: ImagePolicy) -> Path:
    """The real file a path names, only if it lies under an allowed folder (symlinks and '..' resolved first).

    Paths that lie outside every allowed folder as written are refused before the file system is touched; the
    resolved path must lie inside too, so symlinks cannot lead out. Paths that no file system accepts (a NUL byte,
    an unencodable character, over :data:`MAX_PATH_CHARS`, a symlink loop) are bad input. Messages show the path
    only in the bounded form of :func:`shown`.
    """
    roots = policy.allowed_dirs
    if not roots:
        raise Refused("file paths are disabled on this server (no allowed folders; start it with --allow-dir DIR), "
                      "send the image as a data URL or base64 instead")
    name = shown(value)
    if len(value) > MAX_PATH_CHARS:
        raise UserError(f"{name}: the path is {len(value)} characters long, over the {MAX_PATH_CHARS} limit")
    if "\x00" in value or not value.isprintable():
        raise UserError(f"{name}: not a valid file path (a NUL byte, a control or an invalid character)")
    try:
        raw = Path(value).expanduser() if value.startswith("~/") else Path(value)
        written = [raw] if raw.is_absolute() else [root / raw for root in roots]
        candidates = [Path(os.path.normpath(c)) for c in written if _under(Path(os.path.normpath(c)), roots)]
        inside = [c.resolve() for c in candidates if _under(c.resolve(), roots)]
        existing = [p for p in inside if os.path.lexists(p)]
    except (RuntimeError, OSError, ValueError) as error:  # symlink loop, no home folder, unencodable name
        raise UserError(f"{name}: the path cannot be resolved ({_reason(error)})") from None
    if not inside:
        raise Refused(f"{name}: refused, the path is outside the allowed folders "
                      f"({', '.join(str(r) for r in roots)})")
    if not existing:
        raise UserError(f"{name}: no such file under the allowed folders")
    return existing[0]


def read_file(path: Path, policy: ImagePolicy, value: str) -> bytes:
    """The bytes of a regular file of at most ``policy.max_bytes``; FIFOs, devices and folders are refused.

    Opened without blocking and without following a last-moment symlink, then checked on the open descriptor, so
    a file swapped for a FIFO or a link after :func:`resolve_path` cannot hang or redirect the read.
    """
    name = shown(value)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (PermissionError, IsADirectoryError) as error:
        if isinstance(error, IsADirectoryError):
            raise UserError(f"{name}: is a folder, not an image file") from None
        raise Refused(f"{name}: refused, the server may not read this file ({_reason(error)})") from None
    except OSError as error:
        raise UserError(f"{name}: cannot open the file ({_reason(error)})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"{name}: is a folder, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{name}: refused, not a regular file (a FIFO, socket or device)")
        if info.st_size > policy.max_bytes:
            raise UserError(f"{name}: {info.st_size / 1e6:.1f} MB is over the {policy.max_bytes / 1e6:.0f} MB limit")
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(policy.max_bytes + 1)
    except OSError as error:
        raise UserError(f"{name}: cannot read the file ({_reason(error)})") from None
    finally:
        os.close(fd)
    if len(data) > policy.max_bytes:
        raise UserError(f"{name}: over the {policy.max_bytes / 1e6:.0f} MB limit")
    return data


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _reason(error: BaseException) -> str:
    """An OS error's reason without the path it names (``strerror``, or the message's first clause)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    if isinstance(error, RuntimeError) and "loop" in str(error).lower():
        return "symlink loop"
    return type(error).__name__


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64 with or without padding and line breaks; b"" when it does not decode."""
    compact = re.sub(r"\s", "", text)
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.urlsafe_b64decode(compact) if "-" in compact or "_" in compact else base64.b64decode(compact)
    except (binascii.Error, ValueError):
        return b""


def _check_size(data: bytes, policy: ImagePolicy, source: str) -> None:
    if len(data) > policy.max_bytes:
        raise UserError(f"{source}: {len(data) / 1e6:.1f} MB is over the {policy.max_bytes / 1e6:.0f} MB limit")


def _from_data_url(text: str, policy: ImagePolicy) -> np.ndarray:
    match = _DATA_URL.match(text)
    if match is None or not match.group("b64"):
        raise UserError("image data URL must look like data:image/png;base64,<data>")
    mime = (match.group("mime") or "").lower()
    if mime and not mime.startswith("image/"):
        raise UserError(f"image data URL has media type {mime}; expected image/*")
    data = _b64decode(text[match.end():])
    if not data:
        raise UserError("image data URL: the base64 part does not decode")
    _check_size(data, policy, "data URL")
    return load_image_bytes(data, "data URL image")


def _from_url(url: str, policy: ImagePolicy) -> np.ndarray:
    if not policy.allow_urls:
        raise Refused("image URLs are disabled on this server (start it with --allow-urls), send the image as a "
                      "data URL or base64 instead")
    if not url.lower().startswith(("http://", "https://")):
        raise Refused(f"{shown(url.split(':', 1)[0])}: only http and https URLs are allowed")
    with extra_imports("agent"):
        import httpx

    chunks, size = [], 0
    try:
        with httpx.stream("GET", url, timeout=policy.url_timeout_s, follow_redirects=True) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    raise UserError(f"{shown(url)}: larger than the {policy.max_bytes / 1e6:.0f} MB limit")
                chunks.append(chunk)
    except httpx.HTTPStatusError as error:
        raise UserError(f"{shown(url)}: cannot download (HTTP {error.response.status_code})") from None
    except httpx.HTTPError as error:
        raise UserError(f"{shown(url)}: cannot download ({type(error).__name__})") from None
    return load_image_bytes(b"".join(chunks), source=shown(url))
