"""Bounded session stores, one per client: ids inside ``mask_id``s, each session's status, and memory accounting.

Each client (an MCP session; ``local`` for in-process callers) has its own store with its own limits: at most
``max_sessions`` sessions and ``client_bytes`` of arrays, the least recently used going first. Together the stores
hold at most ``total_bytes``, for at most ``max_clients`` clients. A client's calls only ever evict that client's
own sessions: when the global budget is full and the caller has nothing left to give back, the new session is
refused instead, and other clients' sessions are freed only by their time-to-live (``ttl_s`` after last use) or
when their client goes. A ``mask_id`` is looked up in the caller's store alone, so another client's id is
``not_found``, word for word like an unknown one.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from addp_agent.errors import UserError

if TYPE_CHECKING:
    from addp_agent.agent import Session

_MASK_ID = re.compile(r"^m-([0-9a-f]{12})-r([0-9]{1,3})$")
LOCAL = "local"  # the client of in-process callers (Python, OpenAI and LangChain adapters)
MiB = 2**20


class NotFound(UserError):
    """An unknown or expired mask_id (or one of another client: the same answer)."""


class StoreFull(UserError):
    """No room for a new session: too many clients, or the global memory budget is taken by other clients."""


@dataclass
class _Entry:
    session: Session
    status: str
    touched: float
    nbytes: int


@dataclass
class _Client:
    entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    nbytes: int = 0


class SessionStore:
    """Per-client LRU stores (sessions, bytes) inside a global budget (clients, bytes), with a time-to-live."""

    def __init__(self, max_sessions: int = 16, ttl_s: float = 1800.0, clock: Callable[[], float] = time.monotonic,
                 *, client_bytes: int = 256 * MiB, total_bytes: int = 1024 * MiB, max_clients: int = 64) -> None:
        if min(max_sessions, max_clients) < 1 or min(client_bytes, total_bytes) < 1 or ttl_s <= 0:
            raise UserError("session limits must be positive")
        self.max_sessions, self.ttl_s, self.clock = max_sessions, ttl_s, clock
        self.client_bytes, self.total_bytes, self.max_clients = client_bytes, total_bytes, max_clients
        self._clients: dict[str, _Client] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------------------------- sessions
    def check_room(self, client: str = LOCAL) -> None:
        """:class:`StoreFull` when a new session of ``client`` could not be kept (checked before the work)."""
        with self._lock:
            self._expire()
            self._room(client)

    def add(self, session: Session, status: str = "", client: str = LOCAL) -> str:
        """Keep ``session`` for ``client``; returns its id. Makes room by evicting ``client``'s own least recently
        used sessions; :class:`StoreFull` when that is not enough."""
        nbytes = _measure(session)
        if nbytes > self.client_bytes:
            raise StoreFull(f"this session holds {nbytes / MiB:.0f} MiB, over the {self.client_bytes / MiB:.0f} MiB "
                            "a client may keep; use a smaller image")
        session_id = secrets.token_hex(6)
        with self._lock:
            self._expire()
            self._room(client)
            store = self._clients.setdefault(client, _Client())
            store.entries[session_id] = _Entry(session, status, self.clock(), nbytes)
            store.nbytes += nbytes
            self._bytes += nbytes
            self._fit(client, session_id)
        return session_id

    def update(self, session_id: str, client: str = LOCAL) -> None:
        """Account a session again after it grew (a new round); evicts ``client``'s other sessions to fit."""
        with self._lock:
            store = self._clients.get(client)
            entry = store.entries.get(session_id) if store else None
        if entry is None:
            return
        nbytes = _measure(entry.session)
        with self._lock:
            store = self._clients.get(client)
            if store is None or store.entries.get(session_id) is not entry:
                return
            store.nbytes += nbytes - entry.nbytes
            self._bytes += nbytes - entry.nbytes
            entry.nbytes = nbytes
            self._fit(client, session_id, keep_over=True)

    def lookup(self, mask_id: str, client: str = LOCAL) -> tuple[Session, int]:
        """The session and the 1-based round a mask_id names, in ``client``'s store; :class:`NotFound` when it is
        not there (unknown, expired, evicted or another client's)."""
        session_id, round_index = parse_mask_id(mask_id)
        session = self._entry(session_id, client, asked=mask_id).session
        if not 1 <= round_index <= len(session.rounds):
            raise NotFound(f"mask_id {mask_id}: this session has rounds 1..{len(session.rounds)}")
        return session, round_index

    def status(self, session_id: str, client: str = LOCAL) -> str:
        return self._entry(session_id, client).status

    def set_status(self, session_id: str, status: str, client: str = LOCAL) -> None:
        self._entry(session_id, client).status = status

    def drop_client(self, client: str) -> None:
        """Forget every session of ``client`` (its connection closed)."""
        with self._lock:
            store = self._clients.pop(client, None)
            if store is not None:
                self._bytes -= store.nbytes

    def usage(self) -> dict[str, Any]:
        """Clients, sessions and bytes held now, and the limits."""
        with self._lock:
            self._expire()
            return {"clients": len(self._clients), "sessions": sum(len(c.entries) for c in self._clients.values()),
                    "bytes": self._bytes, "max_clients": self.max_clients, "max_sessions": self.max_sessions,
                    "client_bytes": self.client_bytes, "total_bytes": self.total_bytes}

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return sum(len(c.entries) for c in self._clients.values())

    # ------------------------------------------------------------------------------------- under the lock
    def _entry(self, session_id: str, client: str, asked: str | None = None) -> _Entry:
        """The live entry (now the most recently used); :class:`NotFound` when not in ``client``'s store."""
        with self._lock:
            self._expire()
            store = self._clients.get(client)
            entry = store.entries.get(session_id) if store else None
            if entry is None:
                raise NotFound(f"mask_id {asked or mask_id(session_id, 1)} is unknown or expired (sessions live "
                               f"{self.ttl_s:g} s after last use, at most {self.max_sessions} at a time); call segment "
                               "again")
            entry.touched = self.clock()
            store.entries.move_to_end(session_id)  # type: ignore[union-attr]
            return entry

    def _room(self, client: str) -> None:
        store = self._clients.get(client)
        if store is None and len(self._clients) >= self.max_clients:
            raise StoreFull(f"the server keeps sessions for at most {self.max_clients} clients and has that many; "
                            f"try again when sessions expire ({self.ttl_s:g} s after their last use)")
        if self._bytes >= self.total_bytes and not (store and store.entries):
            raise StoreFull(f"the server's session memory ({self.total_bytes / MiB:.0f} MiB for all clients) is "
                            f"taken; try again when sessions expire ({self.ttl_s:g} s after their last use)")

    def _fit(self, client: str, current: str, keep_over: bool = False) -> None:
        """Evict ``client``'s least recently used sessions (never ``current``) until the client is within its
        limits and all clients within the global budget; if the budget is still exceeded, ``current`` goes too
        (:class:`StoreFull`), unless ``keep_over`` (a session that grew keeps its new round)."""
        store = self._clients[client]

        def over() -> bool:
            return (len(store.entries) > self.max_sessions or store.nbytes > self.client_bytes
                    or self._bytes > self.total_bytes)

        while over() and len(store.entries) > 1:
            victim = next(k for k in store.entries if k != current)
            self._remove(client, victim)
        if self._bytes > self.total_bytes and not keep_over:
            self._remove(client, current)
            raise StoreFull(f"the server's session memory ({self.total_bytes / MiB:.0f} MiB for all clients) is "
                            f"taken; try again when sessions expire ({self.ttl_s:g} s after their last use)")

    def _remove(self, client: str, session_id: str) -> None:
        store = self._clients[client]
        entry = store.entries.pop(session_id)
        store.nbytes -= entry.nbytes
        self._bytes -= entry.nbytes
        if not store.entries:
            del self._clients[client]

    def _expire(self) -> None:
        now = self.clock()
        for client, store in list(self._clients.items()):
            for key in [k for k, e in store.entries.items() if now - e.touched > self.ttl_s]:
                self._remove(client, key)
                if client not in self._clients:
                    break


def _measure(session: Any) -> int:
    nbytes = getattr(session, "nbytes", None)
    return int(nbytes()) if callable(nbytes) else 0


def parse_mask_id(mask_id: str) -> tuple[str, int]:
    """(session id, 1-based round) of a ``mask_id``; :class:`NotFound` when it is not one."""
    match = _MASK_ID.match(mask_id or "")
    if match is None:
        raise NotFound(f"{mask_id!r} is not a mask_id (expected m-<12 hex>-r<round>, as returned by segment)")
    return match.group(1), int(match.group(2))


def mask_id(session_id: str, round_index: int) -> str:
    return f"m-{session_id}-r{round_index}"
