"""Raw reads of a server's answers for the contract tests: the SSE events of a streamed chat
completion as they came, with their arrival times, and the pieces the kit reads out of them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx

from tests.contract import cases

TIMEOUT_S = 60.0


@dataclass
class Stream:
    status: int
    content_type: str
    events: list[dict] = field(default_factory=list)  # every JSON chunk, in order
    arrivals_s: list[float] = field(default_factory=list)  # each chunk's arrival after the request
    done_last: bool = False  # [DONE] was the last event
    raw_lines: list[str] = field(default_factory=list)

    @property
    def choice_chunks(self) -> list[dict]:
        return [e for e in self.events if e.get("choices")]

    def deltas(self) -> list[dict]:
        return [e["choices"][0].get("delta") or {} for e in self.choice_chunks]

    def joined(self, key: str) -> str:
        return "".join(d.get(key) or "" for d in self.deltas() if isinstance(d.get(key), str))

    @property
    def reasoning(self) -> str:
        return self.joined("reasoning")

    @property
    def content(self) -> str:
        return self.joined("content")

    def tool_call_deltas(self) -> list[dict]:
        return [tc for d in self.deltas() for tc in d.get("tool_calls") or []]

    @property
    def finish_reasons(self) -> list[str]:
        return [e["choices"][0]["finish_reason"] for e in self.choice_chunks if e["choices"][0].get("finish_reason")]

    @property
    def usage_chunks(self) -> list[dict]:
        return [e for e in self.events if e.get("usage")]


def payload(server, case: cases.Case, *, thinking: bool, **extra) -> dict:
    body = {"model": server.model, "messages": [{"role": "user", "content": case.prompt}], "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0,
            "chat_template_kwargs": {"enable_thinking": thinking}, "max_tokens": 200}
    if case.tools():
        body["tools"] = case.tools()
        body["tool_choice"] = "auto"
    body.update(extra)
    return body


def stream_chat(server, body: dict) -> Stream:
    start = time.monotonic()
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=TIMEOUT_S) as resp:
        out = Stream(resp.status_code, resp.headers.get("content-type", ""))
        if resp.status_code != 200:
            resp.read()
            out.raw_lines = [resp.text]
            return out
        for line in resp.iter_lines():
            at = time.monotonic() - start
            out.raw_lines.append(line)
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                out.done_last = True
                continue
            assert not out.done_last, f"an event after [DONE]: {data[:200]}"
            out.events.append(json.loads(data))
            out.arrivals_s.append(at)
    return out


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=TIMEOUT_S)


def get(server, path: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}{path}", timeout=TIMEOUT_S)
