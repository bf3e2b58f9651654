"""Stale work never queues: per client, one request at a time, and older ones are dropped.

Each page sends a client id and an increasing sequence number with every zoom request.
A request first records its number as the client's newest, then waits for the client's
turn; when the turn comes it runs only if no newer request has arrived meanwhile.  So
however fast a slider moves, at most one request per client computes and one waits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class _Client:
    latest: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


class RequestSequencer:
    """Tracks the newest sequence number of each client (at most ``max_clients`` kept)."""

    def __init__(self, max_clients: int = 1024):
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()
        self.superseded = 0

    def _client(self, client: str, seq: int) -> _Client:
        with self._lock:
            state = self._clients.get(client)
            if state is None:
                state = self._clients[client] = _Client()
                while len(self._clients) > self.max_clients:
                    self._clients.popitem(last=False)
            self._clients.move_to_end(client)
            state.latest = max(state.latest, seq)
            return state

    def latest(self, client: str) -> int:
        with self._lock:
            state = self._clients.get(client)
            return -1 if state is None else state.latest

    def is_current(self, client: str, seq: int) -> bool:
        """False once a newer request of the same client has arrived."""
        return seq >= self.latest(client)

    def count_superseded(self) -> None:
        with self._lock:
            self.superseded += 1

    @contextmanager
    def turn(self, client: str, seq: int) -> Iterator[bool]:
        """Wait for the client's turn; yields False when the request went stale meanwhile."""
        state = self._client(client, seq)
        with state.lock:
            current = self.is_current(client, seq)
            if not current:
                self.count_superseded()
            yield current

    @contextmanager
    def try_turn(self, client: str, seq: int) -> Iterator[bool | None]:
        """:meth:`turn` without waiting: yields None when the client's turn is taken (an
        answer at hand on the event loop must never block it)."""
        state = self._client(client, seq)
        if not state.lock.acquire(blocking=False):
            yield None
            return
        try:
            current = self.is_current(client, seq)
            if not current:
                self.count_superseded()
            yield current
        finally:
            state.lock.release()
