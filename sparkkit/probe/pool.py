"""The probe client's connections: an httpx transport that keeps one connection per slot.

httpx's own pool (httpcore's) walks every connection it holds twice per request, and asks the
kernel about each idle one, so its cost per request grows with the connections: at 64 streams
~9 ms of client CPU a request against ~5 ms with this pool (50-token streams, a loaded 2-core
machine; 25 against 9 ms at 50 tok/s). Here each slot is an ``httpx.AsyncHTTPTransport`` limited
to one connection, and idle slots wait in a list, the last used first out, so a request costs
the same at 1 stream and at 256.

Rules kept from the raw-asyncio client this replaces: at most ``max_connections`` open; new ones
at most ``connect_at_once`` at a time (a burst of connects overflows a small listen backlog, the
simulators listen with 5, and comes back as resets after seconds of SYN retries); a request sent
on a kept-alive connection that the server had closed is sent once more, on a new connection,
when not one byte of an answer came back (it was not served): the response then carries
``RETRIED`` in its extensions, so the request is recorded as retried.

A request's first-byte deadline (``FIRST_BYTE_S`` in its extensions, seconds) runs from the moment
it has a connection slot (a wait for a free one does not count) to its answer's head, the resend
included; past it, ``FirstByteTimeout``.

May import: nothing of sparkkit (httpx only).
"""

from __future__ import annotations

import asyncio
from typing import Callable

import httpx

# what a kept-alive connection the server had closed gives back before any byte of an answer:
# "Server disconnected without sending a response", a reset, or a broken pipe
NOT_SERVED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
FIRST_BYTE_S = "sparkkit.first_byte_s"  # request extension: the first-byte deadline
RETRIED = "sparkkit.retried"  # response extension: sent twice, the first time on a closed connection


class FirstByteTimeout(httpx.TimeoutException):
    """The answer's head did not arrive within the request's first-byte deadline."""


class ConnectionPool(httpx.AsyncBaseTransport):
    """Keep-alive connections to one server for an ``httpx.AsyncClient`` (``transport=``)."""

    def __init__(self, *, max_connections: int, connect_at_once: int):
        self.connections_opened = 0
        self._free = asyncio.Semaphore(max_connections)
        self._connecting = asyncio.Semaphore(connect_at_once)
        self._idle: list[httpx.AsyncHTTPTransport] = []
        self._slots: list[httpx.AsyncHTTPTransport] = []
        self._ssl = httpx.create_ssl_context(trust_env=False)  # once, not per slot: it reads the CA file

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._free.acquire()
        slot = self._idle.pop() if self._idle else self._new_slot()
        first_byte_s = request.extensions.get(FIRST_BYTE_S)
        try:
            try:
                async with asyncio.timeout(first_byte_s):
                    response, retried = await self._send(slot, request)
            except TimeoutError:
                raise FirstByteTimeout(f"no answer within {first_byte_s:g}s", request=request) from None
        except BaseException:
            self._put_back(slot)
            raise
        if retried:
            response.extensions[RETRIED] = True
        response.stream = _GivesBackSlot(response.stream, lambda: self._put_back(slot))
        return response

    async def _send(self, slot: httpx.AsyncHTTPTransport, request: httpx.Request) -> tuple[httpx.Response, bool]:
        """(the response, whether it took a second try on a new connection)."""
        trace = request.extensions["trace"] = _Trace(self)
        try:
            return await slot.handle_async_request(request), False
        except NOT_SERVED:
            if trace.connected:
                raise
            # the slot's connection was closed and dropped with the error: this opens a new one
            request.extensions["trace"] = _Trace(self)
            return await slot.handle_async_request(request), True

    def _new_slot(self) -> httpx.AsyncHTTPTransport:
        slot = httpx.AsyncHTTPTransport(verify=self._ssl, trust_env=False,
                                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        self._slots.append(slot)
        return slot

    def _put_back(self, slot: httpx.AsyncHTTPTransport) -> None:
        self._idle.append(slot)
        self._free.release()

    async def aclose(self) -> None:
        for slot in self._slots:
            await slot.aclose()


class _GivesBackSlot(httpx.AsyncByteStream):
    """A response body that returns its slot to the pool once closed (read to the end or not)."""

    def __init__(self, stream: httpx.AsyncByteStream, give_back: Callable[[], None]):
        self._stream = stream
        self._give_back: Callable[[], None] | None = give_back

    async def __aiter__(self):
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._give_back is not None:
                give_back, self._give_back = self._give_back, None
                give_back()


class _Trace:
    """httpcore's ``trace`` hook for one request: holds new connects to the pool's limit, counts
    them, and tells whether the request went out on a connection of its own."""

    def __init__(self, pool: ConnectionPool):
        self._pool = pool
        self._holding = False
        self.connected = False

    async def __call__(self, event: str, info: dict) -> None:
        if event == "connection.connect_tcp.started":
            await self._pool._connecting.acquire()
            self._holding = True
        elif event in ("connection.connect_tcp.complete", "connection.connect_tcp.failed"):
            if self._holding:
                self._pool._connecting.release()
                self._holding = False
            if event.endswith(".complete"):
                self.connected = True
                self._pool.connections_opened += 1
