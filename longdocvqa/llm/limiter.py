"""Adaptive concurrency for one endpoint: AIMD (additive increase, multiplicative decrease on HTTP 429).

Owns: `AdaptiveLimiter`, a FIFO slot gate whose limit widens by about one per round trip and halves once per
burst of 429s; `has_room`/`take` let the router (endpoints.py) choose among several endpoints' limiters without
queueing on one. Does not own: retries or backoff (client.py), the choice of endpoint (endpoints.py).
"""

from __future__ import annotations

import asyncio
from collections import deque


class AdaptiveLimiter:
    """AIMD concurrency limit: +1/limit per success (about +1 per round trip), halved once per burst of 429s.

    Waiters queue in FIFO order and a release hands its slot to exactly one of them (no thundering herd).
    """

    def __init__(self, max_limit: int) -> None:
        self.max_limit = max_limit
        self.limit = float(max_limit)
        self.min_limit_seen = float(max_limit)
        self.in_flight = 0
        self.decreases = 0
        self._epoch = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def bind(self) -> None:
        """Forget waiters and slots of a finished event loop."""
        self._waiters = deque()
        self.in_flight = 0

    def has_room(self) -> bool:
        """Whether a slot is free now (no one queued here, fewer in flight than the limit)."""
        return not self._waiters and self.in_flight < max(1, int(self.limit))

    def take(self) -> int:
        """Take a slot without waiting (the caller checked `has_room`); returns the epoch the request starts in."""
        self.in_flight += 1
        return self._epoch

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch the request starts in."""
        if self.has_room():
            return self.take()
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot just before the cancel: give it back
                self.in_flight -= 1
                self._wake()
            raise
        return self._epoch

    def release(self, epoch: int, throttled: bool) -> None:
        """Free a slot, widening the limit after a success and halving it after a 429 of the current epoch."""
        self.in_flight -= 1
        if throttled and epoch == self._epoch:
            self.limit = max(1.0, self.limit / 2)
            self.min_limit_seen = min(self.min_limit_seen, self.limit)
            self._epoch += 1
            self.decreases += 1
        elif not throttled:
            self.limit = min(float(self.max_limit), self.limit + 1.0 / self.limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < max(1, int(self.limit)):
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)
