"""The one probe client: every HTTP request of the probes, `sparkkit probe --url` and the bench.

``AsyncProbeClient`` is the core, on ``httpx.AsyncClient``: streamed chat completions, plain
requests (embeddings, web search, health), many streams at once (``chat_many``). ``ProbeClient``
is its small sync wrapper for sequential callers (the probe runner, the CLI): an event loop of its
own, run in the caller's thread for each call, so a request is timed inside the loop exactly as on
the async path and kept-alive connections stay open from one call to the next.

Request functions never raise: a failure comes back as a record (``ChatRecord``, ``HttpRecord``)
with ``ok=False`` and the error, so failures are counted, not lost.

Timing: a request's clock starts once it is built (its JSON encoded), as it is handed to the
connection pool, so a connect or a wait for a free connection is inside it; each chunk is timed as
it arrives and ``stream.StreamAccumulator`` turns those times into TTFT, TTFO and tok/s.
``timeout_s`` bounds a whole request, ``connect_timeout_s`` its connect.

Connections (``pool.ConnectionPool``): at most ``max_connections`` to the one base URL, kept
alive, new ones a few at a time; ``prewarm(n)`` opens them before a measured window. A request
sent on a kept-alive connection that the server had closed is sent once more, on a new
connection, when not one byte of an answer came back (its clock keeps running from the first try).

May import: ``probe.pool``, ``probe.sse``, ``probe.stream``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx

from sparkkit.probe.pool import ConnectionPool
from sparkkit.probe.sse import SSEDecoder
from sparkkit.probe.stream import ChatRecord, StreamAccumulator, consume, failed, record_from_message

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True, kw_only=True)
class HttpRecord:
    """A plain request: embeddings, web search, health, round trip."""

    ok: bool
    error: str | None
    latency_ms: float | None
    status: int | None
    body: object  # parsed JSON when the answer is JSON, else the text (truncated)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class AsyncProbeClient:
    """Keep-alive connections to one base URL; every method returns records and never raises."""

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, connect_timeout_s: float = 10.0,
                 max_connections: int = 32, connect_at_once: int = 8):
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._pool = ConnectionPool(max_connections=max_connections, connect_at_once=connect_at_once)
        self._http = httpx.AsyncClient(base_url=base_url, transport=self._pool,
                                       trust_env=False,  # no proxies from the environment
                                       timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))

    @property
    def connections_opened(self) -> int:
        return self._pool.connections_opened

    async def _send(self, method: str, path: str, **content) -> tuple[httpx.Response, float]:
        """(the response, its head read and its body still to come; when its clock started)."""
        request = self._http.build_request(method, path, **content)
        start = time.perf_counter()
        return await self._http.send(request, stream=True), start

    async def chat(self, payload: dict, *, path: str = CHAT_PATH) -> ChatRecord:
        """A chat completion, streamed when ``payload["stream"]`` is true."""
        acc = StreamAccumulator()
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                resp, start = await self._send("POST", path, json=payload)
                try:
                    if resp.status_code != 200:
                        body = (await resp.aread()).decode("utf-8", "replace")
                        return failed(f"HTTP {resp.status_code}: {body[:200]}", http_status=resp.status_code,
                                      latency_ms=(time.perf_counter() - start) * 1000)
                    if not payload.get("stream"):
                        body = json.loads(await resp.aread())
                        elapsed = time.perf_counter() - start
                        if not isinstance(body, dict):
                            return failed("answer is not a JSON object", http_status=200,
                                          latency_ms=elapsed * 1000)
                        return record_from_message(body, latency_s=elapsed)
                    decoder = SSEDecoder()
                    done = False
                    async for raw in resp.aiter_raw():
                        at_s = time.perf_counter() - start  # on arrival, before the decoding
                        done = consume(acc, decoder.feed(raw), at_s) or done
                    end_s = time.perf_counter() - start
                    done = consume(acc, decoder.close(), end_s) or done
                    return acc.record(end_s=end_s, done=done)
                finally:
                    await resp.aclose()
        except (httpx.HTTPError, OSError, ValueError) as exc:
            partial = f" after {acc.chunks} chunk(s)" if acc.chunks else ""
            return failed(f"{self._error_text(exc)}{partial}", latency_ms=(time.perf_counter() - start) * 1000)

    async def chat_many(self, payloads: list[dict], *, path: str = CHAT_PATH) -> list[ChatRecord]:
        """All at once (as many on the wire as there are connections); the records in payload order."""
        return list(await asyncio.gather(*(self.chat(p, path=path) for p in payloads)))

    async def request(self, method: str, path: str, *, json_body: dict | None = None, params: dict | None = None,
                      expect_json: bool = True) -> HttpRecord:
        """A plain request, read whole; ``ok`` means HTTP 200 (and JSON, when ``expect_json``)."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                resp, start = await self._send(method, path, json=json_body, params=params)
                try:
                    await resp.aread()
                finally:
                    await resp.aclose()
            elapsed = (time.perf_counter() - start) * 1000
            body: object = resp.text[:2000]
            if expect_json and resp.status_code == 200:
                try:
                    body = resp.json()
                except ValueError:
                    return HttpRecord(ok=False, error="answer is not JSON", latency_ms=elapsed, status=200, body=body)
            ok = resp.status_code == 200
            return HttpRecord(ok=ok, error=None if ok else f"HTTP {resp.status_code}: {resp.text[:200]}",
                              latency_ms=elapsed, status=resp.status_code, body=body)
        except (httpx.HTTPError, OSError) as exc:
            return HttpRecord(ok=False, error=self._error_text(exc), latency_ms=(time.perf_counter() - start) * 1000,
                              status=None, body=None)

    async def prewarm(self, n: int, *, path: str = "/health") -> int:
        """Hold ``n`` requests for ``path`` open at once (at most ``max_connections``), so that ``n``
        connections stand open in the pool afterwards: before a measured window, so that no connect
        lands inside it. Any answer will do. Returns how many could not be sent."""
        count = min(n, self.max_connections)
        if count <= 0:
            return 0
        all_sent = asyncio.Barrier(count)

        async def one() -> bool:
            try:
                resp, _ = await self._send("GET", path)
            except (httpx.HTTPError, OSError):
                await all_sent.wait()
                return False
            try:
                await all_sent.wait()  # every connection is taken before any goes back to the pool
                await resp.aread()
                return True
            except (httpx.HTTPError, OSError):
                return False
            finally:
                await resp.aclose()

        try:
            async with asyncio.timeout(self.timeout_s):
                return (await asyncio.gather(*(one() for _ in range(count)))).count(False)
        except TimeoutError:
            return count

    async def aclose(self) -> None:
        await self._http.aclose()

    def _error_text(self, exc: Exception) -> str:
        if isinstance(exc, TimeoutError):  # the whole request's deadline (asyncio.timeout)
            return f"TimeoutError: timed out after {self.timeout_s:g}s"
        name = type(exc).__name__
        text = str(exc) or name
        return f"{name}: {text}" if name not in text else text


class ProbeClient:
    """``AsyncProbeClient`` for sequential callers: the same methods, blocking. One event loop of
    its own (``asyncio.Runner``) runs each call in the caller's thread: no thread hand-off, and the
    request is timed inside the loop as on the async path. One caller at a time; not for use
    inside a running event loop. Close it (or use ``with``)."""

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, connect_timeout_s: float = 10.0,
                 max_connections: int = 32, connect_at_once: int = 8):
        self._runner = asyncio.Runner()
        self.aio = AsyncProbeClient(base_url, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                    max_connections=max_connections, connect_at_once=connect_at_once)

    @property
    def connections_opened(self) -> int:
        return self.aio.connections_opened

    def chat(self, payload: dict, *, path: str = CHAT_PATH) -> ChatRecord:
        return self._runner.run(self.aio.chat(payload, path=path))

    def chat_many(self, payloads: list[dict], *, path: str = CHAT_PATH) -> list[ChatRecord]:
        return self._runner.run(self.aio.chat_many(payloads, path=path))

    def request(self, method: str, path: str, *, json_body: dict | None = None, params: dict | None = None,
                expect_json: bool = True) -> HttpRecord:
        return self._runner.run(self.aio.request(method, path, json_body=json_body, params=params,
                                                 expect_json=expect_json))

    def prewarm(self, n: int, *, path: str = "/health") -> int:
        return self._runner.run(self.aio.prewarm(n, path=path))

    def close(self) -> None:
        try:
            self._runner.run(self.aio.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> ProbeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
