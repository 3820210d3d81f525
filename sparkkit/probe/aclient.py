"""An asyncio probe client for many concurrent streams: the same records as ``client.chat``.

The threaded httpx client spends ~1 ms of Python per streamed request in httpx/httpcore/h11 and
holds the GIL for it, so at 64 streams on a small machine the client's own queueing shows up as
TTFT. Here one event loop drives plain keep-alive HTTP/1.1 connections (asyncio streams): the
request is written in one piece, the answer is read as it comes (Content-Length, chunked, or
until close) and fed to the same SSE decoder and ``StreamAccumulator`` as the threaded client.
Plain ``http://`` only: the probes reach services directly or through the SSH tunnel.

Like every request function here, ``chat`` never raises: failures come back as records.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

from sparkkit.probe.sse import SSEDecoder
from sparkkit.probe.stream import ChatRecord, StreamAccumulator, consume, failed

MAX_HEADER_BYTES = 64 * 1024


class HttpError(Exception):
    """The server's answer is not HTTP/1.x as this client reads it."""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class AsyncClient:
    """Keep-alive connections to one ``http://host:port`` base, at most ``max_connections`` open."""

    def __init__(self, base_url: str, *, max_connections: int = 256, timeout_s: float = 120.0,
                 connect_timeout_s: float = 10.0, connect_at_once: int = 8):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the async probe client speaks plain http:// only, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)
        # new connections a few at a time: a burst of connects overflows a small listen backlog
        # (the simulators listen with 5) and comes back as resets after seconds of SYN retries
        self._connecting = asyncio.Semaphore(connect_at_once)
        self.connections_opened = 0

    async def _checkout(self, *, fresh: bool = False) -> tuple[_Conn, bool]:
        """(a connection, whether it was reused from the pool)."""
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn, True
            conn.close()
        async with self._connecting:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                    self.connect_timeout_s)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections_opened += 1
        return _Conn(reader, writer), False

    def _request_bytes(self, method: str, path: str, body: bytes) -> bytes:
        head = (f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode("latin-1") + body

    async def prewarm(self, n: int) -> int:
        """Open connections until ``n`` are idle in the pool (before a measured window, so no
        connect lands inside it); returns how many could not be opened."""
        async def one():
            try:
                conn, _ = await self._checkout(fresh=True)
            except (OSError, asyncio.TimeoutError):
                return None
            return conn

        conns = await asyncio.gather(*(one() for _ in range(max(0, n - len(self._idle)))))
        self._idle.extend(c for c in conns if c is not None)
        return sum(c is None for c in conns)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def chat(self, payload: dict, *, path: str = "/v1/chat/completions") -> ChatRecord:
        """A streamed chat completion (``payload["stream"]`` should be true); never raises.
        Times run from the moment the request is written to the connection."""
        request = self._request_bytes("POST", path, json.dumps(payload).encode())
        acc = StreamAccumulator()
        start = time.perf_counter()
        async with self._slots:
            conn = None
            try:
                async with asyncio.timeout(self.timeout_s):
                    conn, reused = await self._checkout()
                    try:
                        start = time.perf_counter()
                        conn.writer.write(request)
                        status, headers = await _read_head(conn.reader)
                    except (OSError, EOFError):
                        if not reused:
                            raise
                        # a kept-alive connection the server had closed: not one byte came back,
                        # so the request was not served; send it once more on a new connection
                        conn.close()
                        conn, _ = await self._checkout(fresh=True)
                        start = time.perf_counter()
                        conn.writer.write(request)
                        status, headers = await _read_head(conn.reader)
                    if status != 200:
                        body = await _read_body_all(conn.reader, headers)
                        conn.close()
                        conn = None
                        return failed(f"HTTP {status}: {body.decode('utf-8', 'replace')[:200]}", http_status=status,
                                      latency_ms=(time.perf_counter() - start) * 1000)
                    decoder = SSEDecoder()
                    done = False
                    async for piece in _body_pieces(conn.reader, headers):
                        done = consume(acc, decoder.feed(piece), time.perf_counter() - start) or done
                    done = consume(acc, decoder.close(), time.perf_counter() - start) or done
                    end = time.perf_counter() - start
                    if _keep_alive(headers):
                        self._idle.append(conn)
                    else:
                        conn.close()
                    conn = None
                    return acc.record(end_s=end, done=done)
            except (OSError, EOFError, HttpError, ValueError, asyncio.TimeoutError,
                    asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                elapsed = (time.perf_counter() - start) * 1000
                partial = f" after {acc.chunks} chunk(s)" if acc.chunks else ""
                name = type(exc).__name__
                text = str(exc) or name
                if isinstance(exc, asyncio.TimeoutError):
                    text = f"timed out after {self.timeout_s:g}s"
                return failed(f"{name}: {text}{partial}" if name not in text else f"{text}{partial}",
                              latency_ms=elapsed)
            finally:
                if conn is not None:
                    conn.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    if len(raw) > MAX_HEADER_BYTES:
        raise HttpError("response header too large")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    headers[":version"] = parts[0]
    return int(parts[1]), headers


def _keep_alive(headers: dict[str, str]) -> bool:
    conn = headers.get("connection", "").lower()
    if headers[":version"] == "HTTP/1.0":
        return conn == "keep-alive" and "content-length" in headers
    return conn != "close" and ("content-length" in headers or "chunked" in headers.get("transfer-encoding", ""))


async def _body_pieces(reader: asyncio.StreamReader, headers: dict[str, str]):
    """The body as it arrives: chunked, by Content-Length, or until the server closes."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                    pass
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, 65536))
            if not data:
                raise EOFError("connection closed inside the body")
            left -= len(data)
            yield data
    else:
        while data := await reader.read(65536):
            yield data


async def _read_body_all(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    return b"".join([piece async for piece in _body_pieces(reader, headers)])


async def chat_many(client: AsyncClient, payloads: list[dict]) -> list[ChatRecord]:
    """Send all at once (bounded by the client's connections); the records in payload order."""
    return list(await asyncio.gather(*(client.chat(p) for p in payloads)))
