"""A bounded session store (LRU + TTL) that hands out ``mask_id``s."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from addp_agent.errors import UserError

_MASK_ID = re.compile(r"^m-([0-9a-f]{12})-r([0-9]{1,3})$")


class NotFound(UserError):
    """An unknown or expired mask_id."""


@dataclass
class _Entry:
    session: Any
    touched: float


class SessionStore:
    """At most ``max_sessions`` sessions, each dropped ``ttl_s`` seconds after its last use."""

    def __init__(self, max_sessions: int = 16, ttl_s: float = 1800.0, clock: Callable[[], float] = time.monotonic):
        self.max_sessions, self.ttl_s, self.clock = max_sessions, ttl_s, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: Any) -> str:
        """Store ``session``; returns its id (evicting the least recently used beyond the bound)."""
        session_id = secrets.token_hex(6)
        with self._lock:
            self._expire()
            self._entries[session_id] = _Entry(session, self.clock())
            while len(self._entries) > self.max_sessions:
                self._entries.popitem(last=False)
        return session_id

    def lookup(self, mask_id: str) -> tuple[Any, int]:
        """The session and the 1-based round a mask_id names; :class:`NotFound` when unknown or expired."""
        match = _MASK_ID.match(mask_id or "")
        if match is None:
            raise NotFound(f"{mask_id!r} is not a mask_id (expected m-<12 hex>-r<round>, as returned by segment)")
        with self._lock:
            self._expire()
            entry = self._entries.get(match.group(1))
            if entry is None:
                raise NotFound(f"mask_id {mask_id} is unknown or expired (sessions live {self.ttl_s:g} s after last "
                               f"use, at most {self.max_sessions} at a time); call segment again")
            entry.touched = self.clock()
            self._entries.move_to_end(match.group(1))
        round_index = int(match.group(2))
        if not 1 <= round_index <= len(entry.session.rounds):
            raise NotFound(f"mask_id {mask_id}: this session has rounds 1..{len(entry.session.rounds)}")
        return entry.session, round_index

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, e in self._entries.items() if now - e.touched > self.ttl_s]:
            del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)


def mask_id(session_id: str, round_index: int) -> str:
    return f"m-{session_id}-r{round_index}"
