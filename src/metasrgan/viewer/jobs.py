"""Where the viewer's heavy work runs: a bounded pool for requests, an idle-time look-ahead.

Requests compute on a small thread pool (``workers``, two by default), so one client's long
zoom leaves a worker for everybody else's small ones; at most ``max_pending`` computations
wait, beyond that a request is refused at once (HTTP 503) instead of queueing without bound.
Look-ahead work (features of the slices next to the one on screen, zoom stops of the one
on screen) runs on its own thread and only while no request is computing or waiting, and
:data:`IDLE_GRACE_S` after the last request ended (a drag's requests come back to back: a
unit started in the gap between two of them would compete with the next for the cores);
each job is given a ``cancelled`` check that turns true as soon as a request arrives, so it
stops at its next band of rows (or before its zoom) and is tried again later.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from metasrgan.viewer.engine import Cancelled

T = TypeVar("T")
IDLE_GRACE_S = 0.15
"""Quiet time after a request before look-ahead work starts."""

_OPEN: weakref.WeakSet = weakref.WeakSet()
"""Pools whose threads run (an app whose lifespan never ended leaves one, e.g. a test client
used without ``with``)."""


@atexit.register
def _close_open_pools() -> None:
    """Stop the look-ahead of every pool still running at interpreter exit: a daemon thread
    killed inside a torch operation aborts the process ("terminate called without an
    active exception", seen once at the end of a test run)."""
    for pool in list(_OPEN):
        pool.close(timeout=5.0)


class Busy(RuntimeError):
    """Too many computations are waiting already."""


class ComputePool:
    def __init__(self, workers: int = 2, max_pending: int = 16, grace: float = IDLE_GRACE_S):
        self.workers = workers
        self.max_pending = max_pending
        self.grace = grace
        self._last_request = 0.0
        self._pending = 0
        self._cond = threading.Condition()
        self._lookahead: deque[tuple[Hashable, Callable[[Callable[[], bool]], object]]] = deque()
        self._closed = True
        self._running = False
        self.lookahead_done = 0
        self.lookahead_interrupted = 0
        self.start()

    def start(self) -> None:
        """(Re)start the threads: an app's lifespan may end and begin again (test clients)."""
        with self._cond:
            if not self._closed:
                return
            self._closed = False
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="metasrgan-zoom")
        self._thread = threading.Thread(target=self._lookahead_loop, daemon=True)
        self._thread.start()
        _OPEN.add(self)

    @property
    def pending(self) -> int:
        with self._cond:
            return self._pending

    def run(self, fn: Callable[..., T], *args) -> T:
        """Run ``fn(*args)`` on the pool and wait for it (call from a request's thread)."""
        with self._cond:
            if self._pending >= self.max_pending:
                raise Busy(f"the viewer is busy ({self._pending} computations waiting); try again")
            self._pending += 1
        try:
            return self._executor.submit(fn, *args).result()
        finally:
            with self._cond:
                self._pending -= 1
                self._last_request = time.monotonic()
                self._cond.notify_all()

    def look_ahead(self, jobs: list[tuple[Hashable, Callable[[Callable[[], bool]], object]]]):
        """Replace the look-ahead queue (the newest view decides what is worth doing)."""
        with self._cond:
            self._lookahead.clear()
            self._lookahead.extend(jobs)
            self._last_request = time.monotonic()  # a request just came (maybe from memory)
            self._cond.notify_all()

    @property
    def running_lookahead(self) -> bool:
        with self._cond:
            return self._running

    def queued_lookahead(self) -> list[Hashable]:
        with self._cond:
            return [key for key, _ in self._lookahead]

    def idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request computes and the look-ahead queue is empty (tests, benches)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._pending == 0 and not self._lookahead and not self._running,
                timeout,
            )

    def _lookahead_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closed or (self._lookahead and self._pending == 0)
                )
                if self._closed:
                    return
                quiet = self._last_request + self.grace - time.monotonic()
                if quiet > 0:
                    self._cond.wait(quiet)
                    continue
                key, job = self._lookahead.popleft()
                self._running = True
            try:
                job(lambda: self.pending > 0 or self._closed)
                self.lookahead_done += 1
            except Cancelled:
                self.lookahead_interrupted += 1
                with self._cond:  # try again once the requests are done, unless replaced
                    if key not in (k for k, _ in self._lookahead):
                        self._lookahead.appendleft((key, job))
            except Exception:  # noqa: BLE001 - a failed guess must never stop the viewer
                pass
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Stop: the look-ahead at its next band, queued work dropped, running work finished
        (a thread killed inside torch at interpreter exit aborts the process)."""
        with self._cond:
            self._closed = True
            self._lookahead.clear()
            self._cond.notify_all()
        self._thread.join(timeout)
        self._executor.shutdown(wait=True, cancel_futures=True)
        _OPEN.discard(self)
