"""A bounded session store (LRU + TTL): it hands out the session ids inside ``mask_id``s and keeps each session's
status (why its last run stopped, or what happened last)."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from addp_agent.errors import UserError

if TYPE_CHECKING:
    from addp_agent.agent import Session

_MASK_ID = re.compile(r"^m-([0-9a-f]{12})-r([0-9]{1,3})$")


class NotFound(UserError):
    """An unknown or expired mask_id."""


@dataclass
class _Entry:
    session: Session
    status: str
    touched: float


class SessionStore:
    """At most ``max_sessions`` sessions, each dropped ``ttl_s`` seconds after its last use."""

    def __init__(self, max_sessions: int = 16, ttl_s: float = 1800.0, clock: Callable[[], float] = time.monotonic):
        self.max_sessions, self.ttl_s, self.clock = max_sessions, ttl_s, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: Session, status: str = "") -> str:
        """Store ``session``; returns its id (evicting the least recently used beyond the bound)."""
        session_id = secrets.token_hex(6)
        with self._lock:
            self._expire()
            self._entries[session_id] = _Entry(session, status, self.clock())
            while len(self._entries) > self.max_sessions:
                self._entries.popitem(last=False)
        return session_id

    def lookup(self, mask_id: str) -> tuple[Session, int]:
        """The session and the 1-based round a mask_id names; :class:`NotFound` when unknown or expired."""
        session_id, round_index = parse_mask_id(mask_id)
        session = self._entry(session_id, asked=mask_id).session
        if not 1 <= round_index <= len(session.rounds):
            raise NotFound(f"mask_id {mask_id}: this session has rounds 1..{len(session.rounds)}")
        return session, round_index

    def status(self, session_id: str) -> str:
        return self._entry(session_id).status

    def set_status(self, session_id: str, status: str) -> None:
        self._entry(session_id).status = status

    def _entry(self, session_id: str, asked: str | None = None) -> _Entry:
        """The live entry (now the most recently used); :class:`NotFound` when unknown or expired."""
        with self._lock:
            self._expire()
            entry = self._entries.get(session_id)
            if entry is None:
                raise NotFound(f"mask_id {asked or mask_id(session_id, 1)} is unknown or expired (sessions live "
                               f"{self.ttl_s:g} s after last use, at most {self.max_sessions} at a time); call segment "
                               "again")
            entry.touched = self.clock()
            self._entries.move_to_end(session_id)
            return entry

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, e in self._entries.items() if now - e.touched > self.ttl_s]:
            del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)


def parse_mask_id(mask_id: str) -> tuple[str, int]:
    """(session id, 1-based round) of a ``mask_id``; :class:`NotFound` when it is not one."""
    match = _MASK_ID.match(mask_id or "")
    if match is None:
        raise NotFound(f"{mask_id!r} is not a mask_id (expected m-<12 hex>-r<round>, as returned by segment)")
    return match.group(1), int(match.group(2))


def mask_id(session_id: str, round_index: int) -> str:
    return f"m-{session_id}-r{round_index}"
