"""Images from tool arguments: a path under allowed folders, a data URL, base64, or a URL when allowed."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from addp_agent.errors import UserError
from addp_agent.images import load_image_bytes

_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)


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
    return load_image_bytes(resolve_path(text, policy).read_bytes(), source=text)


def resolve_path(value: str, policy: ImagePolicy) -> Path:
    """The real file a path names, only if it lies under an allowed folder (symlinks and '..' resolved first)."""
    roots = policy.allowed_dirs
    if not roots:
        raise Refused("file paths are disabled on this server (no allowed folders; start it with --allow-dir DIR), "
                      "send the image as a data URL or base64 instead")
    raw = Path(value).expanduser()
    candidates = [raw] if raw.is_absolute() else [root / raw for root in roots]
    inside = [c.resolve() for c in candidates if any(c.resolve().is_relative_to(root) for root in roots)]
    if not inside:
        raise Refused(f"{value}: refused, the path is outside the allowed folders "
                      f"({', '.join(str(r) for r in roots)})")
    for path in inside:
        if path.is_file():
            return path
    raise UserError(f"{value}: no such file under the allowed folders")


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
        raise Refused(f"{url.split(':', 1)[0]}: only http and https URLs are allowed")
    import httpx

    chunks, size = [], 0
    try:
        with httpx.stream("GET", url, timeout=policy.url_timeout_s, follow_redirects=True) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    raise UserError(f"{url}: larger than the {policy.max_bytes / 1e6:.0f} MB limit")
                chunks.append(chunk)
    except httpx.HTTPError as error:
        raise UserError(f"{url}: cannot download ({error})") from None
    return load_image_bytes(b"".join(chunks), source=url)
