"""A hostile OpenAI-compatible server for the probe tests: a real asyncio TCP server on raw sockets,
so that it can break HTTP itself, with named misbehaviours.

Each case is reached under its own prefix, ``http://127.0.0.1:PORT/case/NAME``: the endpoint the
case names (streamed chat, plain chat, embeddings, models, web search) misbehaves, every other
path (the health endpoint the runner pings first) answers as a good server does. ``CASES`` lists
them with what the kit must say: the ``Failure`` and a piece of the reason (the field or limit).
The server runs in a thread of its own (``HostileServer``, a context manager).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from sparkkit.probe.limits import Failure

MAX_SERVE_S = 30.0  # no endless answer outlives this, whatever the client does


class Wire:
    """One connection's writer, with the few ways of answering the cases need."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.started = time.monotonic()

    async def raw(self, data: bytes) -> None:
        if time.monotonic() - self.started > MAX_SERVE_S:
            raise ConnectionError("served long enough")
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, status: int = 200, reason: str = "OK", headers: dict | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        await self.raw(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def whole(self, body: bytes | str | dict | list, *, status: int = 200, reason: str = "OK",
                    content_type: str | None = "application/json", headers: dict | None = None) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        head = {"Content-Length": str(len(body)), **(headers or {})}
        if content_type:
            head["Content-Type"] = content_type
        await self.head(status, reason, head)
        await self.raw(body)

    async def stream_head(self, content_type: str = "text/event-stream") -> None:
        await self.head(200, "OK", {"Content-Type": content_type, "Transfer-Encoding": "chunked"})

    async def piece(self, data: bytes) -> None:
        await self.raw(b"%x\r\n%s\r\n" % (len(data), data))

    async def end(self) -> None:
        await self.raw(b"0\r\n\r\n")

    async def events(self, *events, done: bool = True, end: bool = True) -> None:
        """A whole stream of ``data:`` events (dicts as JSON, bytes as they are)."""
        await self.stream_head()
        for e in events:
            await self.piece(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n")
        if done:
            await self.piece(b"data: [DONE]\n\n")
        if end:
            await self.end()


def delta(**d) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d,
                                                                          "finish_reason": None}]}


def choice(**c) -> dict:
    return {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None, **c}]}


GOOD = [delta(role="assistant", content=""), delta(content="Hello"), delta(content=" there"),
        {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}]


def usage(**u) -> dict:
    return {"id": "c1", "choices": [], "usage": u}


def tool(**tc) -> dict:
    return delta(tool_calls=[{"index": 0, "id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"},
                              **tc}])


Answer = Callable[[Wire, dict], Awaitable[bool]]  # -> keep the connection open


def stream(*events, done: bool = True, before: list | None = None) -> Answer:
    async def answer(w: Wire, req: dict) -> bool:
        await w.events(*(before if before is not None else GOOD[:2]), *events, done=done)
        return True
    return answer


def whole(body, **kw) -> Answer:
    async def answer(w: Wire, req: dict) -> bool:
        await w.whole(body, **kw)
        return True
    return answer


async def silent(w: Wire, req: dict) -> bool:
    """Reads the request, then says nothing until the client goes away."""
    try:
        await asyncio.wait_for(w.reader.read(), MAX_SERVE_S)
    except TimeoutError:
        pass
    return False


async def hang_up(w: Wire, req: dict) -> bool:
    return False


async def garbage_head(w: Wire, req: dict) -> bool:
    await w.raw(b"SPARK/9 banana\r\nwhat: ever\r\n\r\n{}")
    return False


async def head_drip(w: Wire, req: dict) -> bool:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n":
        await w.raw(bytes([byte]))
        await asyncio.sleep(0.1)
    return False


async def drip(w: Wire, req: dict) -> bool:
    await w.stream_head()
    for byte in b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in GOOD):
        await w.piece(bytes([byte]))
        await asyncio.sleep(0.05)
    return False


async def endless(w: Wire, req: dict) -> bool:
    await w.stream_head()
    while True:
        await w.piece(b"data: " + json.dumps(delta(content="more ")).encode() + b"\n\n")
        await asyncio.sleep(0.01)


async def flood(w: Wire, req: dict) -> bool:
    await w.stream_head()
    block = (b"data: " + json.dumps(delta(content="x" * 200)).encode() + b"\n\n") * 200
    while True:
        await w.piece(block)


async def huge_line(w: Wire, req: dict) -> bool:
    await w.stream_head()
    await w.piece(b'data: {"choices": [{"delta": {"content": "')
    while True:
        await w.piece(b"a" * 16384)


async def huge_event(w: Wire, req: dict) -> bool:
    await w.stream_head()
    while True:
        await w.piece(b"data: " + b"a" * 1000 + b"\n")


async def close_mid_event(w: Wire, req: dict) -> bool:
    await w.stream_head()
    await w.piece(b"data: " + json.dumps(GOOD[1]).encode() + b"\n\n")
    await w.piece(b'data: {"choices": [{"delta": {"cont')
    return False


async def truncated_json_eof(w: Wire, req: dict) -> bool:
    """No chunked framing: the body runs to the close, which cuts the last event's JSON."""
    await w.head(200, "OK", {"Content-Type": "text/event-stream", "Connection": "close"})
    await w.raw(b"data: " + json.dumps(GOOD[1]).encode() + b'\n\ndata: {"choices": [{"delta": {"content": "Hel')
    return False


async def huge_head(w: Wire, req: dict) -> bool:
    await w.raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Filler: ")
    while True:
        await w.raw(b"a" * 4096)


async def bad_chunk_size(w: Wire, req: dict) -> bool:
    await w.stream_head()
    await w.raw(b"zz\r\ndata: {}\r\n")
    return False


async def gzip_unasked(w: Wire, req: dict) -> bool:
    body = gzip.compress(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in GOOD) + b"data: [DONE]\n\n")
    await w.whole(body, content_type="text/event-stream", headers={"Content-Encoding": "gzip"})
    return True


def status(code: int, reason: str, body: str = "", **headers) -> Answer:
    async def answer(w: Wire, req: dict) -> bool:
        await w.whole(body, status=code, reason=reason, content_type="text/plain", headers=headers)
        return True
    return answer


def closes_kept_alive() -> Answer:
    """llama.cpp's way: a connection answers one request; the next one sent on it is read and the
    connection closed without a byte of answer."""
    async def answer(w: Wire, req: dict) -> bool:
        if req["nth"] > 1:
            return False
        await w.events(*GOOD)
        return True
    return answer


@dataclass(frozen=True)
class Case:
    name: str
    endpoint: str  # "chat" (streamed), "chat_plain" (not streamed), "embed", "search", "models"
    failure: Failure
    says: str  # a piece of the one-line reason: the field or limit it names
    answer: Answer


DEEP = b"[" * 20_000 + b"]" * 20_000  # 40 kB: within the line cap, far past the depth cap
MESSAGE = {"id": "c1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                                    "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

CASES = [
    # streamed chat: JSON
    Case("malformed_json", "chat", Failure.BAD_JSON, "not JSON", stream(b'{"choices": [}')),
    Case("truncated_json_at_close", "chat", Failure.BAD_JSON, "event 2: not JSON", truncated_json_eof),
    Case("nan_in_json", "chat", Failure.BAD_JSON, "NaN is not JSON", stream(b'{"choices": NaN}')),
    Case("deeply_nested_json", "chat", Failure.JSON_DEPTH, "deeper than", stream(b'{"x": ' + DEEP + b"}")),
    Case("event_not_an_object", "chat", Failure.WRONG_TYPE, "event 3: expected an object", stream(b"42")),
    Case("invalid_utf8", "chat", Failure.BAD_UTF8, "invalid UTF-8",
         stream(b'{"choices": [{"delta": {"content": "\xff\xfe"}}]}')),
    # streamed chat: a wrong type at every field the kit reads
    Case("choices_a_number", "chat", Failure.WRONG_TYPE, "choices: expected an array", stream({"choices": 5})),
    Case("choice_a_string", "chat", Failure.WRONG_TYPE, "choices[0]: expected an object", stream({"choices": ["x"]})),
    Case("delta_a_list", "chat", Failure.WRONG_TYPE, "choices[0].delta: expected an object",
         stream({"choices": [{"delta": []}]})),
    Case("content_a_number", "chat", Failure.WRONG_TYPE, "choices[0].delta.content", stream(delta(content=42))),
    Case("reasoning_an_object", "chat", Failure.WRONG_TYPE, "choices[0].delta.reasoning",
         stream(delta(reasoning={"a": 1}))),
    Case("reasoning_content_a_list", "chat", Failure.WRONG_TYPE, "delta.reasoning_content",
         stream(delta(reasoning_content=["x"]))),
    Case("tool_calls_an_object", "chat", Failure.WRONG_TYPE, "delta.tool_calls: expected an array",
         stream(delta(tool_calls={"index": 0}))),
    Case("tool_call_a_string", "chat", Failure.WRONG_TYPE, "tool_calls[0]: expected an object",
         stream(delta(tool_calls=["f"]))),
    Case("tool_index_a_list", "chat", Failure.WRONG_TYPE, "tool_calls[0].index: expected an integer",
         stream(tool(index=[0]))),
    Case("tool_index_absurd", "chat", Failure.OUT_OF_RANGE, "tool_calls[0].index", stream(tool(index=10**9))),
    Case("tool_id_a_number", "chat", Failure.WRONG_TYPE, "tool_calls[0].id", stream(tool(id=7))),
    Case("function_a_string", "chat", Failure.WRONG_TYPE, "tool_calls[0].function: expected an object",
         stream(tool(function="f"))),
    Case("function_name_a_number", "chat", Failure.WRONG_TYPE, "function.name",
         stream(tool(function={"name": 7, "arguments": "{}"}))),
    Case("arguments_an_object", "chat", Failure.WRONG_TYPE, "function.arguments",
         stream(tool(function={"name": "f", "arguments": {"a": 1}}))),
    Case("finish_reason_a_number", "chat", Failure.WRONG_TYPE, "choices[0].finish_reason",
         stream(choice(finish_reason=1))),
    Case("usage_a_string", "chat", Failure.WRONG_TYPE, "usage: expected an object",
         stream({"choices": [], "usage": "lots"})),
    Case("usage_negative", "chat", Failure.OUT_OF_RANGE, "usage.completion_tokens",
         stream(usage(prompt_tokens=1, completion_tokens=-5))),
    Case("usage_absurd", "chat", Failure.OUT_OF_RANGE, "usage.prompt_tokens",
         stream(usage(prompt_tokens=10**15, completion_tokens=2))),
    Case("usage_a_fraction", "chat", Failure.WRONG_TYPE, "usage.completion_tokens: expected an integer",
         stream(usage(prompt_tokens=1, completion_tokens=2.5))),
    # streamed chat: framing, sizes, time
    Case("huge_line", "chat", Failure.LINE_CAP, "line cap", huge_line),
    Case("huge_event", "chat", Failure.EVENT_CAP, "event cap", huge_event),
    Case("body_flood", "chat", Failure.BODY_CAP, "body cap", flood),
    Case("endless_stream", "chat", Failure.TOTAL_DEADLINE, "total deadline", endless),
    Case("drip", "chat", Failure.BETWEEN_EVENTS_DEADLINE, "between-events deadline", drip),
    Case("silent", "chat", Failure.FIRST_BYTE_DEADLINE, "first-byte deadline", silent),
    Case("head_drip", "chat", Failure.FIRST_BYTE_DEADLINE, "first-byte deadline", head_drip),
    Case("close_mid_event", "chat", Failure.PROTOCOL, "RemoteProtocolError", close_mid_event),
    Case("close_before_answer", "chat", Failure.PROTOCOL, "without sending a response", hang_up),
    Case("not_http", "chat", Failure.PROTOCOL, "RemoteProtocolError", garbage_head),
    Case("huge_head", "chat", Failure.PROTOCOL, "RemoteProtocolError", huge_head),
    Case("bad_chunk_size", "chat", Failure.PROTOCOL, "RemoteProtocolError", bad_chunk_size),
    Case("events_after_done", "chat", Failure.AFTER_DONE, "after [DONE]",
         stream(*GOOD[2:], b"[DONE]", delta(content="late"), done=False)),
    Case("no_done", "chat", Failure.NO_DONE, "no [DONE]", stream(*GOOD[2:], done=False)),
    Case("role_only", "chat", Failure.NO_TOKEN, "without any token", stream(before=[GOOD[0]])),
    Case("error_event", "chat", Failure.SERVER_ERROR, "boom", stream({"error": {"message": "boom", "code": 500}})),
    Case("html_with_200", "chat", Failure.CONTENT_TYPE, "text/html",
         whole("<html><body>Welcome</body></html>", content_type="text/html")),
    Case("json_for_a_stream", "chat", Failure.CONTENT_TYPE, "application/json", whole(MESSAGE)),
    Case("gzip_not_asked_for", "chat", Failure.CONTENT_TYPE, "content-encoding", gzip_unasked),
    Case("status_503", "chat", Failure.HTTP_STATUS, "HTTP 503", status(503, "Service Unavailable", "busy")),
    Case("status_500_html", "chat", Failure.HTTP_STATUS, "HTTP 500",
         status(500, "Internal Server Error", "<html>\n<h1>oops</h1>\n</html>")),
    Case("redirect", "chat", Failure.REDIRECT, "redirect", status(302, "Found", Location="http://example.invalid/")),
    # chat, not streamed
    Case("message_choices_empty", "chat_plain", Failure.EMPTY, "choices: empty", whole({"choices": []})),
    Case("message_content_a_list", "chat_plain", Failure.WRONG_TYPE, "choices[0].message.content",
         whole({"choices": [{"message": {"content": ["Hi"]}}]})),
    Case("message_missing", "chat_plain", Failure.MISSING, "choices[0].message: missing",
         whole({"choices": [{"text": "Hi"}]})),
    Case("message_truncated", "chat_plain", Failure.BAD_JSON, "not JSON", whole(json.dumps(MESSAGE)[:40])),
    # embeddings
    Case("embeddings_a_string", "embed", Failure.WRONG_TYPE, "embeddings: expected an array",
         whole({"embeddings": "x"})),
    Case("embedding_values_strings", "embed", Failure.WRONG_TYPE, "embeddings[0][1]",
         whole({"embeddings": [[0.1, "b"]]})),
    Case("embeddings_missing", "embed", Failure.MISSING, "embeddings: missing", whole({"embedding": [0.1]})),
    Case("embeddings_html", "embed", Failure.CONTENT_TYPE, "text/html", whole("<html></html>", content_type="text/html")),
    # web search
    Case("results_an_object", "search", Failure.WRONG_TYPE, "results: expected an array", whole({"results": {}})),
    Case("result_url_a_number", "search", Failure.WRONG_TYPE, "results[0].url",
         whole({"results": [{"url": 5, "title": "t"}]})),
    # /v1/models
    Case("models_data_a_number", "models", Failure.WRONG_TYPE, "data: expected an array", whole({"data": 5})),
    Case("model_id_a_list", "models", Failure.WRONG_TYPE, "data[0].id: expected a string",
         whole({"data": [{"id": ["m"]}]})),
]
BY_NAME = {c.name: c for c in CASES}
EXTRA = {"closes_kept_alive": Case("closes_kept_alive", "chat", Failure.UNEXPECTED, "", closes_kept_alive())}
ENDPOINTS = {"chat": "/v1/chat/completions", "chat_plain": "/v1/chat/completions", "embed": "/api/embed",
             "search": "/search", "models": "/v1/models"}


async def normal(w: Wire, req: dict) -> bool:
    """What a good server answers on every other path."""
    if req["path"].startswith("/v1/models"):
        await w.whole({"object": "list", "data": [{"id": "hostile-model"}]})
    elif req["path"].startswith("/v1/chat/completions"):
        await w.events(*GOOD)
    else:
        await w.whole("ok", content_type="text/plain")
    return True


async def read_request(reader: asyncio.StreamReader) -> dict | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return {"method": method, "target": target, "headers": headers, "body": body}


class HostileServer:
    """The server in a thread of its own; ``url(name)`` is a case's base URL."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.requests: dict[str, int] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> HostileServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/case/{name}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=128))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        w = Wire(reader, writer)
        nth = 0
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    return
                nth += 1
                _, _, name, rest = (req["target"].split("/", 3) + ["", "", ""])[:4]
                req["path"], req["nth"] = "/" + rest, nth
                self.requests[name] = self.requests.get(name, 0) + 1
                case = BY_NAME.get(name) or EXTRA.get(name)
                if case is not None and req["path"].startswith(ENDPOINTS[case.endpoint]):
                    keep = await case.answer(w, req)
                else:
                    keep = await normal(w, req)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()
