"""Reading an answer's body within the between-events deadline and the body cap.

``Body.pieces`` yields the raw pieces of one answer with their arrival time. The between-events
deadline is one timer per request (``_Idle``), not one per piece: a stream of many small pieces
costs no timer work per piece. ``read_body`` reads a plain answer whole.

May import: ``probe.limits``.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from typing import AsyncIterator

import httpx

from sparkkit.probe.limits import Breach, Failure, Limits


class _Idle:
    """The between-events deadline as one timer per request, not one per piece: ``push`` only moves
    the deadline, and the timer, when it fires before it, re-arms itself for it. Past the deadline
    it cancels the reading task; ``take`` then tells that cancellation from any other (the total
    deadline's, the caller's) and takes it back."""

    def __init__(self, period_s: float):
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._period_s = period_s
        self.deadline = self._loop.time() + period_s
        self.expired = False
        self._handle = self._loop.call_at(self.deadline, self._check)

    def push(self) -> None:
        self.deadline = self._loop.time() + self._period_s

    def _check(self) -> None:
        if self._loop.time() + 0.001 >= self.deadline:
            self.expired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(self.deadline, self._check)

    def take(self) -> bool:
        """True when the cancellation is this deadline's alone (then it is undone)."""
        if not self.expired:
            return False
        self.expired = False
        return self._task.uncancel() == 0

    def stop(self) -> None:
        self._handle.cancel()


class Body:
    """One answer's raw pieces with their arrival time (s since ``start``), each within the
    between-events deadline: for a stream it restarts at each complete event (``event_seen``), for
    a plain body at each piece. Past it, a ``Breach``; past the body cap, another."""

    def __init__(self, resp: httpx.Response, lim: Limits, start: float, *, per_event: bool):
        self._resp, self._lim, self._start, self._per_event = resp, lim, start, per_event
        self._seen = False

    def event_seen(self) -> None:
        self._seen = True

    async def pieces(self) -> AsyncIterator[tuple[bytes, float]]:
        lim = self._lim
        idle = _Idle(lim.between_events_s)
        total = 0
        try:
            async for raw in self._resp.aiter_raw():
                at_s = time.perf_counter() - self._start  # on arrival, before the decoding
                total += len(raw)
                if total > lim.body_bytes:
                    raise Breach(Failure.BODY_CAP, f"body cap: more than {lim.body_bytes} bytes")
                yield raw, at_s
                if not self._per_event or self._seen:
                    idle.push()
                    self._seen = False
        except asyncio.CancelledError:
            if idle.take():
                what = "event" if self._per_event else "piece of the answer"
                raise Breach(Failure.BETWEEN_EVENTS_DEADLINE,
                             f"between-events deadline: no {what} for {lim.between_events_s:g}s") from None
            raise
        finally:
            idle.stop()


async def read_body(resp: httpx.Response, lim: Limits, *, cut: bool = False) -> bytes:
    """The whole body within the deadlines and the body cap (``cut``: what fits, no Breach)."""
    out = bytearray()
    try:
        async with aclosing(Body(resp, lim, time.perf_counter(), per_event=False).pieces()) as pieces:
            async for raw, _ in pieces:
                out += raw
    except Breach:
        if not cut:
            raise
    return bytes(out)
