"""Turn a streamed chat completion into one measured record (pure: chunks and their times in).

Definitions (DESIGN.md §3): TTFT is the first chunk carrying any token (reasoning, content or a
tool call); TTFO the first content or tool-call chunk. Output tokens come only from the server's
final usage chunk; without it they are unknown. Decode tok/s = (completion_tokens - 1) /
(t_last_token - t_first_token); end-to-end tok/s = completion_tokens / latency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    name: str
    arguments: str  # as streamed, joined
    parsed: dict | None  # the arguments as JSON, None when they do not parse
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChatRecord:
    ok: bool
    error: str | None
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

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["tool_calls"] = [tc.__dict__ for tc in self.tool_calls]
        return out


def failed(error: str, *, http_status: int | None = None, latency_ms: float | None = None) -> ChatRecord:
    return ChatRecord(ok=False, error=error, ttft_ms=None, ttfo_ms=None, latency_ms=latency_ms, decode_tok_s=None,
                      e2e_tok_s=None, prompt_tokens=None, completion_tokens=None, text="", reasoning="",
                      tool_calls=(), finish_reason=None, chunks=0, http_status=http_status)


@dataclass
class _Call:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAccumulator:
    """Collects chunks (parsed JSON) with their arrival time relative to the request start (s)."""

    def __init__(self) -> None:
        self.first_token_s: float | None = None
        self.first_output_s: float | None = None
        self.last_token_s: float | None = None
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.chunks = 0
        self.server_error: str | None = None

    def add(self, chunk: dict, at_s: float) -> None:
        self.chunks += 1
        if not isinstance(chunk, dict):
            return
        if chunk.get("error"):
            err = chunk["error"]
            self.server_error = err.get("message", str(err)) if isinstance(err, dict) else str(err)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            token = output = False
            # vLLM sends `reasoning` (current) or `reasoning_content` (older), sometimes both with the
            # same text: take one of them, never both.
            reasoning = delta.get("reasoning")
            if not reasoning:
                reasoning = delta.get("reasoning_content")
            if reasoning:
                self.reasoning.append(reasoning)
                token = True
            content = delta.get("content")
            if content:
                self.text.append(content)
                token = output = True
            for tc in delta.get("tool_calls") or ():
                index = tc.get("index", 0)
                call = self.calls.setdefault(index, _Call())
                if tc.get("id"):
                    call.id = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    call.name += fn["name"]
                    token = output = True
                if fn.get("arguments"):
                    call.arguments.append(fn["arguments"])
                    token = output = True
            if token:
                if self.first_token_s is None:
                    self.first_token_s = at_s
                self.last_token_s = at_s
            if output and self.first_output_s is None:
                self.first_output_s = at_s
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def tool_calls(self) -> tuple[ToolCall, ...]:
        out = []
        for index in sorted(self.calls):
            call = self.calls[index]
            raw = "".join(call.arguments)
            try:
                parsed = json.loads(raw) if raw.strip() else {}
                error = None if isinstance(parsed, dict) else "arguments are not a JSON object"
                parsed = parsed if isinstance(parsed, dict) else None
            except json.JSONDecodeError as exc:
                parsed, error = None, f"arguments are not valid JSON: {exc.msg}"
            out.append(ToolCall(name=call.name, arguments=raw, parsed=parsed, error=error))
        return tuple(out)

    def record(self, *, end_s: float, done: bool, http_status: int | None = 200) -> ChatRecord:
        usage = self.usage or {}
        completion = usage.get("completion_tokens")
        completion = completion if isinstance(completion, int) else None
        prompt = usage.get("prompt_tokens")
        prompt = prompt if isinstance(prompt, int) else None
        latency_ms = end_s * 1000
        error = None
        if self.server_error:
            error = f"server error in stream: {self.server_error}"
        elif self.first_token_s is None:
            error = (f"stream ended without any token (finish_reason={self.finish_reason}, "
                     f"{self.chunks} chunk(s))")
        elif not done:
            error = "stream ended early (no [DONE])"
        decode = None
        if completion is not None and self.first_token_s is not None and self.last_token_s is not None:
            span = self.last_token_s - self.first_token_s
            if completion > 1 and span > 0:
                decode = (completion - 1) / span
        e2e = completion / end_s if completion is not None and end_s > 0 else None
        return ChatRecord(
            ok=error is None, error=error,
            ttft_ms=None if self.first_token_s is None else self.first_token_s * 1000,
            ttfo_ms=None if self.first_output_s is None else self.first_output_s * 1000,
            latency_ms=latency_ms, decode_tok_s=decode, e2e_tok_s=e2e,
            prompt_tokens=prompt, completion_tokens=completion, text="".join(self.text),
            reasoning="".join(self.reasoning), tool_calls=self.tool_calls(), finish_reason=self.finish_reason,
            chunks=self.chunks, http_status=http_status)


def consume(acc: StreamAccumulator, events: list[str], at_s: float) -> bool:
    """Add each SSE data payload's chunk to ``acc`` (arrived at ``at_s``); True when one was [DONE]."""
    done = False
    for data in events:
        chunk, is_done = parse_event(data)
        done = done or is_done
        if chunk is not None:
            acc.add(chunk, at_s)
    return done


def parse_event(data: str) -> tuple[dict | None, bool]:
    """One SSE data payload -> (chunk or None, is [DONE])."""
    if data.strip() == "[DONE]":
        return None, True
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        return None, False
    return (chunk if isinstance(chunk, dict) else None), False


def record_from_message(body: dict, *, latency_s: float, http_status: int = 200) -> ChatRecord:
    """A non-streaming chat completion: no TTFT, just latency, usage and the message."""
    choice = (body.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    usage = body.get("usage") or {}
    completion = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None
    calls = []
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        acc = StreamAccumulator()
        acc.add({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": fn}]}}]}, 0.0)
        calls.extend(acc.tool_calls())
    text = msg.get("content") or ""
    reasoning = msg.get("reasoning") or msg.get("reasoning_content") or ""
    empty = not text and not calls and not reasoning
    return ChatRecord(
        ok=not empty, error="empty response" if empty else None, ttft_ms=None, ttfo_ms=None,
        latency_ms=latency_s * 1000, decode_tok_s=None,
        e2e_tok_s=completion / latency_s if completion is not None and latency_s > 0 else None,
        prompt_tokens=usage.get("prompt_tokens"), completion_tokens=completion, text=text, reasoning=reasoning,
        tool_calls=tuple(calls), finish_reason=choice.get("finish_reason"), chunks=0, http_status=http_status)
