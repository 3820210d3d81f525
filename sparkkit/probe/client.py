"""The one probe client: every HTTP request of the probes, `sparkkit probe --url` and the bench.

``AsyncProbeClient`` is the core, on ``httpx.AsyncClient``: streamed chat completions, plain
requests (embeddings, web search, health), many streams at once (``chat_many``). ``ProbeClient``
is its small sync wrapper for sequential callers (the probe runner, the CLI): an event loop of its
own, run in the caller's thread for each call, so a request is timed inside the loop exactly as on
the async path and kept-alive connections stay open from one call to the next.

Request functions never raise: a failure comes back as a record (``ChatRecord``, ``HttpRecord``)
with ``ok=False``, its ``failure`` (a ``limits.Failure``) and a one-line ``error`` naming the
field or limit, so failures are counted, not lost.

Bounds (``limits.Limits``, per call or the client's): the connect deadline (httpx's connect
timeout), the first-byte deadline (``pool``: from a connection slot to the answer's head), the
between-events deadline (each complete SSE event, or each piece of a plain body, must follow the
last within it: a drip of bytes that never completes an event does not keep a request alive), and
the total deadline; the line and event caps (``sse``), the body cap (bytes on the wire; the
client asks for no compression) and the JSON depth cap (``fields``). A redirect is not followed;
a content type other than the one asked for fails.

Timing: a request's clock starts once it is built (its JSON encoded), as it is handed to the
connection pool, so a connect or a wait for a free connection is inside it; each chunk is timed as
it arrives and ``stream.StreamAccumulator`` turns those times into TTFT, TTFO and tok/s.

Connections (``pool.ConnectionPool``): at most ``max_connections`` to the one base URL, kept
alive, new ones a few at a time; ``prewarm(n)`` opens them before a measured window. A request
sent on a kept-alive connection that the server had closed is sent once more, on a new
connection, when not one byte of an answer came back (its clock keeps running from the first
try), and its record says ``retried``.

May import: ``probe.limits``, ``probe.fields``, ``probe.body``, ``probe.pool``, ``probe.sse``,
``probe.stream``.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass, replace

import httpx

from sparkkit.probe.body import Body, read_body
from sparkkit.probe.fields import loads_json
from sparkkit.probe.limits import Breach, Failure, Limits, Result, one_line, result_of
from sparkkit.probe.pool import FIRST_BYTE_S, RETRIED, ConnectionPool, FirstByteTimeout
from sparkkit.probe.sse import SSEDecoder
from sparkkit.probe.stream import ChatRecord, StreamAccumulator, consume, failed, record_from_message

CHAT_PATH = "/v1/chat/completions"
SSE_TYPE, JSON_TYPE = "text/event-stream", "application/json"


@dataclass(frozen=True, kw_only=True)
class HttpRecord:
    """A plain request: embeddings, web search, health, round trip."""

    ok: bool
    error: str | None
    latency_ms: float | None
    status: int | None
    body: object  # parsed JSON when the answer is JSON, else the text (truncated)
    failure: Failure | None = None
    retried: bool = False

    @property
    def result(self) -> Result:
        return result_of(self.ok, self.failure)

    def failing(self, breach: Breach) -> HttpRecord:
        """This answer refused for ``breach`` (a field its reader found wrong)."""
        return replace(self, ok=False, error=breach.reason, failure=breach.failure, body=None)

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["failure"] = self.failure.value if self.failure else None
        out["result"] = self.result.value
        return out


class AsyncProbeClient:
    """Keep-alive connections to one base URL; every method returns records and never raises."""

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, connect_timeout_s: float = 10.0,
                 max_connections: int = 32, connect_at_once: int = 8, limits: Limits | None = None):
        self.limits = limits or Limits(total_s=timeout_s, connect_s=connect_timeout_s)
        self.max_connections = max_connections
        self._pool = ConnectionPool(max_connections=max_connections, connect_at_once=connect_at_once)
        self._http = httpx.AsyncClient(base_url=base_url, transport=self._pool,
                                       trust_env=False,  # no proxies from the environment
                                       headers={"Accept-Encoding": "identity"},  # the body cap counts real bytes
                                       timeout=httpx.Timeout(None, connect=self.limits.connect_s))

    @property
    def timeout_s(self) -> float:
        return self.limits.total_s

    @property
    def connections_opened(self) -> int:
        return self._pool.connections_opened

    async def _send(self, method: str, path: str, lim: Limits, **content) -> tuple[httpx.Response, float]:
        """(the response, its head read and its body still to come; when its clock started)."""
        request = self._http.build_request(method, path, timeout=httpx.Timeout(None, connect=lim.connect_s),
                                           extensions={FIRST_BYTE_S: lim.first_byte_s}, **content)
        start = time.perf_counter()
        return await self._http.send(request, stream=True), start

    async def chat(self, payload: dict, *, path: str = CHAT_PATH, limits: Limits | None = None) -> ChatRecord:
        """A chat completion, streamed when ``payload["stream"]`` is true."""
        lim = limits or self.limits
        streamed = bool(payload.get("stream"))
        if not streamed:  # the head comes with the whole answer
            lim = replace(lim, first_byte_s=max(lim.first_byte_s, lim.total_s))
        acc = StreamAccumulator(max_depth=lim.json_depth)
        start = time.perf_counter()
        status, retried = None, False
        try:
            async with asyncio.timeout(lim.total_s):
                resp, start = await self._send("POST", path, lim, json=payload)
                status, retried = resp.status_code, bool(resp.extensions.get(RETRIED))
                try:
                    await _check_head(resp, lim, SSE_TYPE if streamed else JSON_TYPE)
                    if not streamed:
                        body = await read_body(resp, lim)
                        elapsed = time.perf_counter() - start
                        return record_from_message(loads_json(body, max_depth=lim.json_depth), latency_s=elapsed,
                                                   retried=retried)
                    decoder = SSEDecoder(max_line_bytes=lim.line_bytes, max_event_bytes=lim.event_bytes)
                    done = False
                    body = Body(resp, lim, start, per_event=True)
                    async with aclosing(body.pieces()) as pieces:
                        async for raw, at_s in pieces:
                            events = decoder.feed(raw)
                            done = consume(acc, events, at_s) or done
                            _check_stream(acc, decoder)
                            if events:
                                body.event_seen()
                    end_s = time.perf_counter() - start
                    done = consume(acc, decoder.close(), end_s) or done
                    _check_stream(acc, decoder)
                    return acc.record(end_s=end_s, done=done, retried=retried)
                finally:
                    await resp.aclose()
        except Exception as exc:  # noqa: BLE001 - every way a request ends early is a record
            why = _breach_of(exc, lim)
        partial = f" after {acc.chunks} chunk(s)" if acc.chunks else ""
        return failed(f"{why.reason}{partial}", failure=why.failure, http_status=status, retried=retried,
                      latency_ms=(time.perf_counter() - start) * 1000, chunks=acc.chunks)

    async def chat_many(self, payloads: list[dict], *, path: str = CHAT_PATH,
                        limits: Limits | None = None) -> list[ChatRecord]:
        """All at once (as many on the wire as there are connections); the records in payload order."""
        return list(await asyncio.gather(*(self.chat(p, path=path, limits=limits) for p in payloads)))

    async def request(self, method: str, path: str, *, json_body: dict | None = None, params: dict | None = None,
                      expect_json: bool = True, limits: Limits | None = None,
                      text_chars: int | None = 2000) -> HttpRecord:
        """A plain request, read whole; ``ok`` means HTTP 200 (and JSON, when ``expect_json``). A text
        body is kept to ``text_chars`` characters (None: all of it, within the body cap)."""
        lim = limits or self.limits
        start = time.perf_counter()
        status, retried, body = None, False, None
        try:
            async with asyncio.timeout(lim.total_s):
                resp, start = await self._send(method, path, lim, json=json_body, params=params)
                status, retried = resp.status_code, bool(resp.extensions.get(RETRIED))
                try:
                    await _check_head(resp, lim, JSON_TYPE if expect_json else None)
                    raw = await read_body(resp, lim)
                finally:
                    await resp.aclose()
            elapsed = (time.perf_counter() - start) * 1000
            body = (raw if text_chars is None else raw[:text_chars]).decode("utf-8", "replace")
            if expect_json:
                body = loads_json(raw, max_depth=lim.json_depth)
            return HttpRecord(ok=True, error=None, latency_ms=elapsed, status=status, body=body, retried=retried)
        except _HttpStatus as exc:
            why, body = exc, exc.text
        except Exception as exc:  # noqa: BLE001 - every way a request ends early is a record
            why = _breach_of(exc, lim)
        return HttpRecord(ok=False, error=why.reason, failure=why.failure, status=status, body=body,
                          retried=retried, latency_ms=(time.perf_counter() - start) * 1000)

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
                resp, _ = await self._send("GET", path, self.limits)
            except (httpx.HTTPError, OSError):
                await all_sent.wait()
                return False
            try:
                await all_sent.wait()  # every connection is taken before any goes back to the pool
                await read_body(resp, self.limits)
                return True
            except (httpx.HTTPError, OSError, Breach):
                return False
            finally:
                await resp.aclose()

        try:
            async with asyncio.timeout(self.limits.total_s):
                return (await asyncio.gather(*(one() for _ in range(count)))).count(False)
        except TimeoutError:
            return count

    async def aclose(self) -> None:
        await self._http.aclose()


class _HttpStatus(Breach):
    """An answer other than 200; its text (cut) is kept as the record's body."""

    def __init__(self, failure: Failure, reason: str, text: str):
        super().__init__(failure, reason)
        self.text = text


async def _check_head(resp: httpx.Response, lim: Limits, content_type: str | None) -> None:
    """Status 200, no compression, and the content type asked for (when the server names one)."""
    if resp.status_code != 200:
        try:
            async with asyncio.timeout(min(lim.between_events_s, 5.0)):
                raw = await read_body(resp, replace(lim, body_bytes=64 << 10), cut=True)
        except (TimeoutError, Breach, httpx.HTTPError, OSError):
            raw = b""
        text = raw[:2000].decode("utf-8", "replace")
        if 300 <= resp.status_code < 400:
            raise _HttpStatus(Failure.REDIRECT, f"HTTP {resp.status_code}: a redirect (not followed)", text)
        raise _HttpStatus(Failure.HTTP_STATUS, f"HTTP {resp.status_code}: {text[:200]}", text)
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise Breach(Failure.CONTENT_TYPE, f"content-encoding {encoding!r} (none was asked for)")
    got = resp.headers.get("content-type")
    if content_type and got is not None:
        media = got.split(";")[0].strip().lower()
        if media != content_type and not (content_type == JSON_TYPE and media.endswith("+json")):
            raise Breach(Failure.CONTENT_TYPE, f"content type {media or '(empty)'!r}, expected {content_type}")


def _check_stream(acc: StreamAccumulator, decoder: SSEDecoder) -> None:
    """End the request at the first bad event, or the first line that is not UTF-8."""
    if decoder.invalid_utf8:
        raise Breach(Failure.BAD_UTF8, f"invalid UTF-8 in the stream (line {decoder.first_invalid_line})")
    why = acc.failure()
    if why is not None:
        raise Breach(*why)


def _breach_of(exc: Exception, lim: Limits) -> Breach:
    """Why a request ended early, from what was raised: the total deadline, a breach found while
    reading, the transport, or a bug in the kit (still a record, never a traceback)."""
    if isinstance(exc, TimeoutError):
        return Breach(Failure.TOTAL_DEADLINE, f"total deadline: timed out after {lim.total_s:g}s")
    if isinstance(exc, Breach):
        return exc
    if isinstance(exc, (httpx.HTTPError, OSError)):
        return _transport_breach(exc, lim)
    return Breach(Failure.UNEXPECTED, f"unexpected {type(exc).__name__}: {exc} (a bug in sparkkit)")


def _transport_breach(exc: Exception, lim: Limits) -> Breach:
    if isinstance(exc, FirstByteTimeout):
        return Breach(Failure.FIRST_BYTE_DEADLINE, f"first-byte deadline: no answer within {lim.first_byte_s:g}s")
    if isinstance(exc, httpx.ConnectTimeout):
        return Breach(Failure.CONNECT_DEADLINE, f"connect deadline: no connection within {lim.connect_s:g}s")
    if isinstance(exc, httpx.ConnectError):
        return Breach(Failure.CONNECT, _error_text(exc))
    if isinstance(exc, (httpx.ProtocolError, httpx.TooManyRedirects, httpx.UnsupportedProtocol)):
        return Breach(Failure.PROTOCOL, _error_text(exc))
    return Breach(Failure.DISCONNECTED, _error_text(exc))


def _error_text(exc: Exception) -> str:
    name = type(exc).__name__
    text = one_line(str(exc) or name)
    return f"{name}: {text}" if name not in text else text


class ProbeClient:
    """``AsyncProbeClient`` for sequential callers: the same methods, blocking. One event loop of
    its own (``asyncio.Runner``) runs each call in the caller's thread: no thread hand-off, and the
    request is timed inside the loop as on the async path. One caller at a time; not for use
    inside a running event loop. Close it (or use ``with``)."""

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, connect_timeout_s: float = 10.0,
                 max_connections: int = 32, connect_at_once: int = 8, limits: Limits | None = None):
        self._runner = asyncio.Runner()
        self.aio = AsyncProbeClient(base_url, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                    max_connections=max_connections, connect_at_once=connect_at_once, limits=limits)

    @property
    def connections_opened(self) -> int:
        return self.aio.connections_opened

    def chat(self, payload: dict, *, path: str = CHAT_PATH, limits: Limits | None = None) -> ChatRecord:
        return self._runner.run(self.aio.chat(payload, path=path, limits=limits))

    def chat_many(self, payloads: list[dict], *, path: str = CHAT_PATH, limits: Limits | None = None) -> list[ChatRecord]:
        return self._runner.run(self.aio.chat_many(payloads, path=path, limits=limits))

    def request(self, method: str, path: str, *, json_body: dict | None = None, params: dict | None = None,
                expect_json: bool = True, limits: Limits | None = None, text_chars: int | None = 2000) -> HttpRecord:
        return self._runner.run(self.aio.request(method, path, json_body=json_body, params=params,
                                                 expect_json=expect_json, limits=limits, text_chars=text_chars))

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
