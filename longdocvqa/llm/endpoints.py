"""Several servers of one model behind one client: least-outstanding routing, and draining of a failing server.

Owns: `Route` (one base URL: its AsyncOpenAI shards, its AIMD limiter, its health and counters) and `Router`
(which route the next attempt goes to). Each attempt, first ones and retries alike, goes to the route with the
fewest requests outstanding among those with a free slot (ties: fewer requests so far, then list order); a retry
prefers a route other than the one that just failed it. A route whose attempts fail `drain_after_failures` times
in a row (connection errors, timeouts, 5xx: the server, not the request) is drained: no new attempts for
`drain_cooldown_s`, then a single probe (half-open); the probe's success returns it to service, its failure
drains it again for twice as long (at most 16x). While every route is drained, an attempt fails at once unsent
(`AllDrained`, a transient failure for the client's retries), so a build whose servers are all down ends its
calls as `endpoint_error` (retried on the next run) instead of queueing behind cool-downs. A single base URL is
never drained: with nowhere else to send the work, the client's retries behave exactly as they always have.

Limits per route, admission shared: the AIMD limiter (limiter.py) is per route, because a 429 or a slow reply is
one server's signal about its own capacity (halving every server's limit for one overloaded server would idle
the healthy ones), and `max_concurrency` is per server, so adding a server adds capacity. The admission gate
(client.py: at most 2 x the sum of the routes' limits past it) is shared, because it bounds the client's own
work (hashing prompts, encoding pages), not any server's. Work never depends on the route: the ledger key holds
no URL, so a call answered by any server is replayed on resume, and in-flight calls are deduplicated before routing.
Does not own: retries, backoff or error classification (client.py, transport.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from longdocvqa.llm.limiter import AdaptiveLimiter

ENDPOINT_FAILURES = frozenset({"connection", "timeout", "server_error"})  # kinds that count against a server
_MAX_COOLDOWN_FACTOR = 16


class AllDrained(Exception):
    """Every server is drained and none is due for a probe: the attempt fails without a request."""


class Route:
    """One base URL: its HTTP clients, its AIMD limiter, whether it is drained, and what it was sent."""

    def __init__(self, index: int, url: str, max_concurrency: int) -> None:
        self.index = index
        self.url = url
        self.limiter = AdaptiveLimiter(max_concurrency)
        self.clients: list[Any] = []
        self.turn = 0
        self.failures_in_row = 0
        self.drained_until: float | None = None  # time.monotonic() seconds; None: in service
        self.cooldown_factor = 1
        self.probing = False
        self.requests = 0
        self.failures = 0
        self.drains = 0
        self.probes = 0

    @property
    def outstanding(self) -> int:
        return self.limiter.in_flight

    def http(self) -> Any:
        """The next AsyncOpenAI shard of this route, round robin."""
        self.turn = (self.turn + 1) % len(self.clients)
        return self.clients[self.turn]

    def admits(self, now_s: float) -> bool:
        """In service with a free slot, or drained with its cool-down over and no probe out yet."""
        if self.drained_until is not None and (self.probing or now_s < self.drained_until):
            return False
        return self.limiter.has_room()

    def stats(self) -> dict[str, Any]:
        """Counters for the usage summary (by position in the list, never the URL: usage is written to stats)."""
        return {"requests": self.requests, "failures": self.failures, "drains": self.drains, "probes": self.probes,
                "drained": self.drained_until is not None}  # fmt: skip


class Router:
    """Hands out (route, epoch) slots over several routes; FIFO among waiting attempts."""

    def __init__(self, urls: list[str], max_concurrency: int, drain_after: int, cooldown_s: float) -> None:
        self.routes = [Route(i, url, max_concurrency) for i, url in enumerate(urls)]
        self.drain_after = drain_after
        self.cooldown_s = cooldown_s
        self._waiters: deque[tuple[asyncio.Future[tuple[Route, int]], Route | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def bind(self) -> None:
        """Forget waiters, slots and probes of a finished event loop (health and counters are kept)."""
        for route in self.routes:
            route.limiter.bind()
            route.probing = False
        self._waiters = deque()
        self._timer = None

    def pick(self, now_s: float, avoid: Route | None = None) -> Route | None:
        """The admitting route with the least outstanding requests (a retry avoids `avoid` when it can)."""
        admitting = [r for r in self.routes if r.admits(now_s)]
        if not admitting:
            return None
        return min(admitting, key=lambda r: (r is avoid, r.outstanding, r.requests, r.index))

    async def acquire(self, avoid: Route | None = None) -> tuple[Route, int]:
        """Wait for a slot on some route; returns it and the epoch of its limiter the attempt starts in."""
        now_s = time.monotonic()
        if not self._waiters and (route := self.pick(now_s, avoid)) is not None:
            return route, self._take(route)
        if self._all_drained() and self.pick(now_s) is None:
            raise self._all_drained_error()
        future: asyncio.Future[tuple[Route, int]] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, avoid))
        self._arm_timer()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:  # handed a slot: give it back
                route, epoch = future.result()
                self.release(route, epoch, "cancelled")
            raise

    def _take(self, route: Route) -> int:
        if route.drained_until is not None:
            route.probing = True
            route.probes += 1
        route.requests += 1
        return route.limiter.take()

    def release(self, route: Route, epoch: int, kind: str) -> None:
        """Free the slot; `kind` is "ok", an error kind (transport.classify) or "cancelled"."""
        route.limiter.release(epoch, throttled=kind == "rate_limited")
        if kind in ENDPOINT_FAILURES:
            route.failures += 1
            self._failed(route)
        elif kind != "cancelled":  # the server answered (even with a 4xx or a bad body): it is up
            route.failures_in_row = 0
            if route.probing:
                route.drained_until, route.probing, route.cooldown_factor = None, False, 1
        elif route.probing:
            route.probing = False  # the probe was cancelled: the next attempt probes again
        self._wake()

    def _failed(self, route: Route) -> None:
        route.failures_in_row += 1
        if len(self.routes) < 2:
            return  # nowhere else to send the work: the client's retries alone decide
        if route.probing:  # the probe failed: drained again, for longer
            route.probing = False
            route.cooldown_factor = min(_MAX_COOLDOWN_FACTOR, route.cooldown_factor * 2)
            self._drain(route)
        elif route.drained_until is None and route.failures_in_row >= self.drain_after:
            self._drain(route)

    def _drain(self, route: Route) -> None:
        route.drained_until = time.monotonic() + self.cooldown_s * route.cooldown_factor
        route.drains += 1

    def _wake(self) -> None:
        """Hand free slots to waiting attempts, oldest first."""
        while self._waiters:
            future, avoid = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            route = self.pick(time.monotonic(), avoid)
            if route is None:
                break
            self._waiters.popleft()
            future.set_result((route, self._take(route)))
        if self._all_drained():  # nothing in service will free a slot: fail the waiting attempts now
            while self._waiters:
                future, _ = self._waiters.popleft()
                if not future.done():
                    future.set_exception(self._all_drained_error())
        self._arm_timer()

    def _all_drained(self) -> bool:
        return all(r.drained_until is not None for r in self.routes)

    def _all_drained_error(self) -> AllDrained:
        next_s = max(0.0, min((r.drained_until or 0.0) for r in self.routes) - time.monotonic())
        return AllDrained(
            f"all {len(self.routes)} servers drained after repeated failures; next probe in {next_s:.1f} s"
        )

    def _arm_timer(self) -> None:
        """With attempts waiting, wake them when the next drained route's cool-down ends (its probe is due)."""
        due = [r.drained_until for r in self.routes if r.drained_until is not None and not r.probing]
        if not self._waiters or not due:
            return
        when = self._loop_time(min(due))
        if self._timer is not None and self._timer.when() <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._timer_fired)

    @staticmethod
    def _loop_time(monotonic_s: float) -> float:
        """A time.monotonic() instant on the event loop's clock."""
        return asyncio.get_running_loop().time() + (monotonic_s - time.monotonic())

    def _timer_fired(self) -> None:
        self._timer = None
        self._wake()

    def usage(self) -> dict[str, Any]:
        """Per-route counters, keyed by position in the base URL list."""
        return {str(r.index): r.stats() for r in self.routes}
