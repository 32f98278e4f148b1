"""A bounded store of depth maps (LRU + TTL + bytes): the ``depth_id``s the depth tools hand out.

Each map keeps the working image it was computed from (at most 1024 px a side, as segmentation sessions keep
theirs), so a later call can name the image by ``depth_id`` instead of sending it again, and a content key (a hash
of that image and the depth settings) so a call on an image whose map is already kept reuses it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from addp_agent.tools.store import NotFound

_DEPTH_ID = re.compile(r"^d-[0-9a-f]{12}$")
MiB = 2**20


def image_key(image: np.ndarray) -> str:
    """A content hash of an image array (shape, dtype and pixels)."""
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


@dataclass
class DepthMap:
    """One kept depth map: relative depth (H, W) float32 at the working image's size, 0 = near."""

    image: np.ndarray  # the working image (RGB uint8, ≤ 1024 px a side)
    key: str  # image_key(image)
    input_size: tuple[int, int]  # (height, width) of the image the caller sent
    depth: np.ndarray
    uncertainty: np.ndarray | None
    settings: dict[str, Any]  # DepthSettings fields
    seconds: float  # what computing it took

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes + self.depth.nbytes + (0 if self.uncertainty is None else self.uncertainty.nbytes))


@dataclass
class _Entry:
    depth_map: DepthMap
    touched: float


class DepthStore:
    """At most ``max_maps`` maps and ``max_bytes`` of arrays (least recently used go first; the newest always
    stays), each dropped ``ttl_s`` seconds after its last use."""

    def __init__(self, max_maps: int = 16, ttl_s: float = 1800.0, max_bytes: int = 256 * MiB,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_maps, self.ttl_s, self.max_bytes, self.clock = max_maps, ttl_s, max_bytes, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, depth_map: DepthMap) -> str:
        depth_id = f"d-{secrets.token_hex(6)}"
        with self._lock:
            self._expire()
            self._entries[depth_id] = _Entry(depth_map, self.clock())
            while len(self._entries) > 1 and (len(self._entries) > self.max_maps or self._bytes() > self.max_bytes):
                self._entries.popitem(last=False)
        return depth_id

    def lookup(self, depth_id: str) -> DepthMap:
        """The map a depth_id names (now the most recently used); :class:`NotFound` when unknown or expired."""
        if not _DEPTH_ID.match(depth_id or ""):
            raise NotFound(f"{depth_id!r} is not a depth_id (expected d-<12 hex>, as returned by the depth tools)")
        with self._lock:
            self._expire()
            entry = self._entries.get(depth_id)
            if entry is None:
                raise NotFound(f"depth_id {depth_id} is unknown or expired (depth maps live {self.ttl_s:g} s after "
                               f"last use, at most {self.max_maps} at a time); send the image again")
            return self._touch(depth_id, entry)

    def find(self, key: str, settings: dict[str, Any]) -> tuple[str, DepthMap] | None:
        """The kept map of the image with content ``key`` made with ``settings`` (as a subset), if any."""
        with self._lock:
            self._expire()
            for depth_id, entry in reversed(self._entries.items()):
                kept = entry.depth_map
                if kept.key == key and all(kept.settings.get(k) == v for k, v in settings.items()):
                    return depth_id, self._touch(depth_id, entry)
        return None

    def _touch(self, depth_id: str, entry: _Entry) -> DepthMap:
        entry.touched = self.clock()
        self._entries.move_to_end(depth_id)
        return entry.depth_map

    def _bytes(self) -> int:
        return sum(e.depth_map.nbytes for e in self._entries.values())

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, e in self._entries.items() if now - e.touched > self.ttl_s]:
            del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)
