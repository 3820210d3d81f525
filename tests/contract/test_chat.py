"""The chat API as the kit reads it, the same on the simulator and the real vLLM (or the test names the
difference): /v1/models, the streamed chat's SSE shape, the reasoning field under the rendered
reasoning parser (qwen3), the tool-call stream under the rendered tool parser (qwen3_coder), and the
kit's own record of each (sparkkit.probe's ChatRecord)."""

from __future__ import annotations

import json

import pytest

from sparkkit.probe.client import ProbeClient
from tests.contract import cases
from tests.contract.conftest import sim_differs
from tests.contract.servers import MAX_MODEL_LEN
from tests.contract.wire import get, payload, post, stream_chat


def test_models_lists_the_served_name(server):
    resp = get(server, "/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    (model,) = body["data"]
    assert model["id"] == server.model
    assert model["object"] == "model"
    assert model["owned_by"] == "vllm"
    assert isinstance(model["created"], int)
    assert isinstance(model["root"], str) and model["root"]
    assert model["max_model_len"] == MAX_MODEL_LEN


@pytest.mark.parametrize("thinking", [False, True], ids=["thinking-off", "thinking-on"])
def test_stream_shape(server, thinking):
    """Role delta first, then token deltas, one finish_reason, a usage chunk with no choices, [DONE]."""
    s = stream_chat(server, payload(server, cases.CAPITAL, thinking=thinking))
    assert s.status == 200
    assert s.content_type.startswith("text/event-stream")
    assert s.done_last
    ids = {e["id"] for e in s.events}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-")
    assert {e["object"] for e in s.events} == {"chat.completion.chunk"}
    assert {e["model"] for e in s.events} == {server.model}
    first = s.choice_chunks[0]["choices"][0]
    assert first["delta"]["role"] == "assistant"
    assert first["delta"].get("content") == ""
    assert first["finish_reason"] is None
    assert all("role" not in d for d in s.deltas()[1:])
    assert s.finish_reasons == ["stop"]
    finish = next(e for e in s.choice_chunks if e["choices"][0].get("finish_reason"))
    assert finish is s.choice_chunks[-1]  # nothing after the finish but usage and [DONE]
    (usage_chunk,) = s.usage_chunks
    assert usage_chunk is s.events[-1]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] >= 1 and usage["prompt_tokens"] >= 1


def test_usage_only_when_asked(server):
    body = payload(server, cases.CAPITAL, thinking=False)
    del body["stream_options"]
    s = stream_chat(server, body)
    assert s.done_last and s.usage_chunks == []


def test_thinking_off_answers_in_content(server):
    s = stream_chat(server, payload(server, cases.CAPITAL, thinking=False))
    assert s.content == cases.CAPITAL.content
    assert s.reasoning == ""
    assert all("reasoning_content" not in d or d["reasoning_content"] is None for d in s.deltas())


def test_thinking_on_splits_reasoning_from_content(server):
    """qwen3 parser: the text before </think> is `reasoning`, the rest `content` (the tags in neither)."""
    s = stream_chat(server, payload(server, cases.CAPITAL, thinking=True))
    assert s.reasoning.strip() == cases.CAPITAL.reasoning
    assert s.content.strip() == cases.CAPITAL.content
    assert "<think>" not in s.content + s.reasoning and "</think>" not in s.content + s.reasoning
    # reasoning comes first: no content delta before the last reasoning delta
    kinds = ["r" if d.get("reasoning") else "c" for d in s.deltas() if d.get("reasoning") or d.get("content")]
    assert kinds == sorted(kinds, reverse=True)


def test_thinking_on_without_end_tag_is_all_reasoning(server, request):
    """vLLM's qwen3 parser with no </think> in the answer: the whole answer is `reasoning`, `content`
    stays empty (the prompt opened <think>)."""
    s = stream_chat(server, payload(server, cases.NO_THINK_END, thinking=True))
    assert s.content == ""
    assert s.reasoning.strip() == cases.NO_THINK_END.content


def test_tool_call_stream(server):
    """qwen3_coder parser: one call streamed as a header (id, type, name) then argument pieces that join
    to the JSON object; finish_reason tool_calls; the <tool_call> text never reaches content."""
    s = stream_chat(server, payload(server, cases.TOOL, thinking=False))
    pieces = s.tool_call_deltas()
    assert pieces, "no tool-call delta"
    head = pieces[0]
    assert head["index"] == 0
    assert head["id"].startswith("chatcmpl-tool-")
    assert head["type"] == "function"
    assert head["function"]["name"] == "web_search"
    assert {p["index"] for p in pieces} == {0}
    assert [p for p in pieces[1:] if p.get("id") or (p.get("function") or {}).get("name")] == []
    arguments = "".join((p.get("function") or {}).get("arguments") or "" for p in pieces)
    assert json.loads(arguments) == {"query": cases.TOOL.tool_query}
    assert s.finish_reasons == ["tool_calls"]
    assert "<tool_call>" not in s.content
    assert s.content.strip() == ""


def test_tool_call_stream_has_no_content_delta(server):
    """With the call swallowed by the tool parser, vLLM sends no content delta at all (the kit's
    TTFO is then the first tool-call delta)."""
    s = stream_chat(server, payload(server, cases.TOOL, thinking=False))
    assert [d for d in s.deltas()[1:] if d.get("content")] == []


@pytest.mark.parametrize("thinking", [False, True], ids=["thinking-off", "thinking-on"])
def test_kit_record(server, thinking):
    """What sparkkit.probe makes of each answer: the same record on both servers."""
    with ProbeClient(server.base_url) as client:
        plain = client.chat(payload(server, cases.CAPITAL, thinking=thinking))
        tool = client.chat(payload(server, cases.TOOL, thinking=thinking))
    for rec in (plain, tool):
        assert rec.ok, rec.error
        assert rec.http_status == 200
        assert rec.ttft_ms is not None and rec.ttfo_ms is not None and rec.ttft_ms <= rec.ttfo_ms
        assert rec.completion_tokens and rec.prompt_tokens
    assert plain.text.strip() == cases.CAPITAL.content and plain.finish_reason == "stop"
    assert plain.reasoning.strip() == (cases.CAPITAL.reasoning if thinking else "")
    (call,) = tool.tool_calls
    assert call.name == "web_search" and call.parsed == {"query": cases.TOOL.tool_query} and call.error is None
    assert tool.finish_reason == "tool_calls"
    assert tool.reasoning.strip() == (cases.TOOL.reasoning if thinking else "")


def test_max_tokens_cuts_with_length(server):
    s = stream_chat(server, payload(server, cases.COUNT, thinking=False, max_tokens=3))
    assert s.finish_reasons == ["length"]
    assert s.usage_chunks[0]["usage"]["completion_tokens"] == 3
    assert s.content and cases.COUNT.content.startswith(s.content.strip())


def test_non_streaming_answer(server):
    body = payload(server, cases.CAPITAL, thinking=True, stream=False)
    del body["stream_options"]
    resp = post(server, "/v1/chat/completions", body)
    assert resp.status_code == 200
    out = resp.json()
    assert out["object"] == "chat.completion"
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip() == cases.CAPITAL.content
    assert choice["message"]["reasoning"].strip() == cases.CAPITAL.reasoning
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]

