"""Turn a streamed chat completion into one measured record (pure: chunks and their times in).

Definitions (DESIGN.md §3): TTFT is the first chunk carrying any token (reasoning, content or a
tool call); TTFO the first content or tool-call chunk. Output tokens come only from the server's
final usage chunk; without it they are unknown. Decode tok/s = (completion_tokens - 1) /
(t_last_token - t_first_token) when the client can measure it (``probe.arrivals``: enough distinct
arrival times, no burst carrying most tokens), else the lower bound (completion_tokens - 1) /
latency, and ``decode_source`` says which; end-to-end tok/s = completion_tokens / latency.

Every field read from a chunk is checked for its JSON type (``probe.fields``); the first chunk
that breaks a check, malformed JSON, or an event after ``[DONE]`` is kept as the accumulator's
``breach`` (nothing is added after it) and the record fails with it. Nothing here raises.

May import: ``probe.limits``, ``probe.fields``, ``probe.arrivals``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sparkkit.probe.arrivals import DecodeSource, analyse, decode_figure
from sparkkit.probe.fields import count, get, item, loads_json
from sparkkit.probe.limits import Breach, Failure, Limits, Result, result_of

MAX_DEPTH = Limits().json_depth
MAX_TOOL_CALLS = 128  # a tool call index above this is absurd


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    name: str
    arguments: str  # as streamed, joined
    parsed: dict | None  # the arguments as JSON, None when they do not parse
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChatRecord:
    ok: bool
    error: str | None  # one line, naming the field or limit
    ttft_ms: float | None
    ttfo_ms: float | None
    latency_ms: float | None
    decode_tok_s: float | None
    e2e_tok_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None  # from the server's usage; None means unknown
    text: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    chunks: int
    http_status: int | None = None
    failure: Failure | None = None  # what it failed of (None when ok)
    retried: bool = False  # sent again on a new connection: the kept-alive one was closed, nothing served
    decode_source: DecodeSource | None = None  # which figure decode_tok_s is (None: no figure)
    decode_measurable: bool | None = None  # the client could measure decode (None: not a stream)
    token_chunks: int = 0  # chunks that carried a token
    arrivals: int | None = None  # distinct arrival times of those chunks (1 ms resolution)
    largest_burst_tokens: int | None = None  # the most tokens that arrived at once
    token_span_ms: float | None = None  # first token to last token, as they arrived

    @property
    def result(self) -> Result:
        return result_of(self.ok, self.failure)

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["tool_calls"] = [tc.__dict__ for tc in self.tool_calls]
        out["failure"] = self.failure.value if self.failure else None
        out["result"] = self.result.value
        out["decode_source"] = self.decode_source.value if self.decode_source else None
        return out


def failed(error: str, *, failure: Failure = Failure.UNEXPECTED, http_status: int | None = None,
           latency_ms: float | None = None, retried: bool = False, chunks: int = 0) -> ChatRecord:
    return ChatRecord(ok=False, error=error, ttft_ms=None, ttfo_ms=None, latency_ms=latency_ms, decode_tok_s=None,
                      e2e_tok_s=None, prompt_tokens=None, completion_tokens=None, text="", reasoning="",
                      tool_calls=(), finish_reason=None, chunks=chunks, http_status=http_status, failure=failure,
                      retried=retried)


@dataclass
class _Call:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAccumulator:
    """Collects chunks (parsed JSON) with their arrival time relative to the request start (s)."""

    def __init__(self, *, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self.first_token_s: float | None = None
        self.first_output_s: float | None = None
        self.last_token_s: float | None = None
        self.token_times_s: list[float] = []  # the arrival time of each chunk that carried a token
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.completion_tokens: int | None = None
        self.prompt_tokens: int | None = None
        self.chunks = 0
        self.server_error: str | None = None
        self.done = False
        self.breach: Breach | None = None

    def add_event(self, data: str, at_s: float) -> bool:
        """One SSE data payload; True when it was [DONE]. A breach is kept, not raised."""
        if self.breach is not None:
            return False
        if self.done:
            self.breach = Breach(Failure.AFTER_DONE, f"event after [DONE] (after {self.chunks} chunk(s))")
            return False
        if data.strip() == "[DONE]":
            self.done = True
            return True
        try:
            chunk = loads_json(data, max_depth=self.max_depth, what=f"event {self.chunks + 1}")
        except Breach as exc:
            self.breach = exc
            return False
        self.add(chunk, at_s)
        return False

    def add(self, chunk: object, at_s: float) -> None:
        if self.breach is not None:
            return
        self.chunks += 1
        try:
            self._read(item(chunk, dict, f"event {self.chunks}"), at_s)
        except Breach as exc:
            self.breach = exc

    def _read(self, chunk: dict, at_s: float) -> None:
        err = chunk.get("error")
        if err:
            message = err.get("message") if isinstance(err, dict) else None
            self.server_error = str(message if isinstance(message, str) else err)[:200]
        usage = get(chunk, "usage", dict, "")
        if usage:
            self.usage = usage
            self.completion_tokens = count(usage, "completion_tokens", "usage")
            self.prompt_tokens = count(usage, "prompt_tokens", "usage")
        for i, choice in enumerate(get(chunk, "choices", list, "") or ()):
            where = f"choices[{i}]"
            choice = item(choice, dict, where)
            delta = get(choice, "delta", dict, where) or {}
            where += ".delta"
            token = output = False
            # vLLM sends `reasoning` (current) or `reasoning_content` (older), sometimes both with the
            # same text: take one of them, never both.
            reasoning = get(delta, "reasoning", str, where)
            older = get(delta, "reasoning_content", str, where)
            reasoning = reasoning or older
            if reasoning:
                self.reasoning.append(reasoning)
                token = True
            content = get(delta, "content", str, where)
            if content:
                self.text.append(content)
                token = output = True
            for j, tc in enumerate(get(delta, "tool_calls", list, where) or ()):
                at = f"{where}.tool_calls[{j}]"
                tc = item(tc, dict, at)
                index = count(tc, "index", at) or 0
                if index >= MAX_TOOL_CALLS:
                    raise Breach(Failure.OUT_OF_RANGE, f"{at}.index: {index} is out of range (0 to "
                                                       f"{MAX_TOOL_CALLS - 1})")
                call = self.calls.setdefault(index, _Call())
                call_id = get(tc, "id", str, at)
                if call_id:
                    call.id = call_id
                fn = get(tc, "function", dict, at) or {}
                name = get(fn, "name", str, f"{at}.function")
                if name:
                    call.name += name
                    token = output = True
                arguments = get(fn, "arguments", str, f"{at}.function")
                if arguments:
                    call.arguments.append(arguments)
                    token = output = True
            if token:
                self.token_times_s.append(at_s)
                if self.first_token_s is None:
                    self.first_token_s = at_s
                self.last_token_s = at_s
            if output and self.first_output_s is None:
                self.first_output_s = at_s
            finish = get(choice, "finish_reason", str, f"choices[{i}]")
            if finish:
                self.finish_reason = finish

    def tool_calls(self) -> tuple[ToolCall, ...]:
        out = []
        for index in sorted(self.calls):
            call = self.calls[index]
            raw = "".join(call.arguments)
            try:
                parsed = loads_json(raw, max_depth=self.max_depth, what="arguments") if raw.strip() else {}
                error = None if isinstance(parsed, dict) else "arguments are not a JSON object"
                parsed = parsed if isinstance(parsed, dict) else None
            except Breach as exc:
                parsed, error = None, f"arguments are not valid JSON: {exc.reason}"
            out.append(ToolCall(name=call.name, arguments=raw, parsed=parsed, error=error))
        return tuple(out)

    def failure(self) -> tuple[Failure, str] | None:
        """Why the stream so far is a failed request, or None."""
        if self.breach is not None:
            return self.breach.failure, self.breach.reason
        if self.server_error:
            return Failure.SERVER_ERROR, f"server error in stream: {self.server_error}"
        return None

    def record(self, *, end_s: float, done: bool, http_status: int | None = 200, retried: bool = False) -> ChatRecord:
        completion, prompt = self.completion_tokens, self.prompt_tokens
        latency_ms = end_s * 1000
        why = self.failure()
        if why is None and self.first_token_s is None:
            why = Failure.NO_TOKEN, (f"stream ended without any token (finish_reason={self.finish_reason}, "
                                     f"{self.chunks} chunk(s))")
        elif why is None and not done:
            why = Failure.NO_DONE, "stream ended early (no [DONE])"
        arrivals = analyse(self.token_times_s)
        decode, source = decode_figure(arrivals, completion, end_s=end_s)
        e2e = completion / end_s if completion is not None and end_s > 0 else None
        return ChatRecord(
            ok=why is None, error=None if why is None else why[1], failure=None if why is None else why[0],
            ttft_ms=None if self.first_token_s is None else self.first_token_s * 1000,
            ttfo_ms=None if self.first_output_s is None else self.first_output_s * 1000,
            latency_ms=latency_ms, decode_tok_s=decode, e2e_tok_s=e2e,
            prompt_tokens=prompt, completion_tokens=completion, text="".join(self.text),
            reasoning="".join(self.reasoning), tool_calls=self.tool_calls(), finish_reason=self.finish_reason,
            chunks=self.chunks, http_status=http_status, retried=retried, decode_source=source,
            decode_measurable=arrivals.measurable, token_chunks=arrivals.token_chunks, arrivals=arrivals.arrivals,
            largest_burst_tokens=arrivals.largest_burst_tokens(completion), token_span_ms=arrivals.span_s * 1000)


def consume(acc: StreamAccumulator, events: list[str], at_s: float) -> bool:
    """Add each SSE data payload's chunk to ``acc`` (arrived at ``at_s``); True when one was [DONE]."""
    done = False
    for data in events:
        done = acc.add_event(data, at_s) or done
    return done


def parse_event(data: str) -> tuple[dict | None, bool]:
    """One SSE data payload -> (chunk or None, is [DONE]); anything but a JSON object within the
    depth cap gives None."""
    if data.strip() == "[DONE]":
        return None, True
    try:
        chunk = loads_json(data, max_depth=MAX_DEPTH)
    except Breach:
        return None, False
    return (chunk if isinstance(chunk, dict) else None), False


def record_from_message(body: object, *, latency_s: float, http_status: int = 200, retried: bool = False) -> ChatRecord:
    """A non-streaming chat completion: no TTFT, just latency, usage and the message. Never raises."""
    try:
        return _from_message(body, latency_s=latency_s, http_status=http_status, retried=retried)
    except Breach as exc:
        return failed(exc.reason, failure=exc.failure, http_status=http_status, latency_ms=latency_s * 1000,
                      retried=retried)


def _from_message(body: object, *, latency_s: float, http_status: int, retried: bool) -> ChatRecord:
    body = item(body, dict, "the answer")
    choices = get(body, "choices", list, "", required=True)
    if not choices:
        raise Breach(Failure.EMPTY, "choices: empty")
    choice = item(choices[0], dict, "choices[0]")
    msg = get(choice, "message", dict, "choices[0]", required=True)
    where = "choices[0].message"
    usage = get(body, "usage", dict, "") or {}
    completion = count(usage, "completion_tokens", "usage")
    prompt = count(usage, "prompt_tokens", "usage")
    acc = StreamAccumulator()
    for i, tc in enumerate(get(msg, "tool_calls", list, where) or ()):
        fn = get(item(tc, dict, f"{where}.tool_calls[{i}]"), "function", dict, f"{where}.tool_calls[{i}]") or {}
        name = get(fn, "name", str, f"{where}.tool_calls[{i}].function") or ""
        arguments = get(fn, "arguments", str, f"{where}.tool_calls[{i}].function") or ""
        acc.calls[i] = _Call(name=name, arguments=[arguments])
    text = get(msg, "content", str, where) or ""
    reasoning = get(msg, "reasoning", str, where) or get(msg, "reasoning_content", str, where) or ""
    calls = acc.tool_calls()
    empty = not text and not calls and not reasoning
    return ChatRecord(
        ok=not empty, error="empty response" if empty else None, failure=Failure.EMPTY if empty else None,
        ttft_ms=None, ttfo_ms=None, latency_ms=latency_s * 1000, decode_tok_s=None,
        e2e_tok_s=completion / latency_s if completion is not None and latency_s > 0 else None,
        prompt_tokens=prompt, completion_tokens=completion, text=text, reasoning=reasoning,
        tool_calls=calls, finish_reason=get(choice, "finish_reason", str, "choices[0]"), chunks=0,
        http_status=http_status, retried=retried)
