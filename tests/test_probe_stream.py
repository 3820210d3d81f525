"""The stream parser on real captured vLLM streams and on hand-made edge cases."""

import json
from pathlib import Path

import pytest

from sparkkit.probe.sse import SSEDecoder
from sparkkit.probe.stream import StreamAccumulator, parse_event, record_from_message



def shared_fixture(name: str) -> bytes:
    """Real captured streams (copied from shared/fixtures/, see tests/fixtures/captured/README.md)."""
    return (Path(__file__).parent / "fixtures" / "captured" / "vllm" / name).read_bytes()


def decode_all(raw: bytes, splits: list[int]) -> list[str]:
    decoder = SSEDecoder()
    events, last = [], 0
    for cut in splits + [len(raw)]:
        events += decoder.feed(raw[last:cut])
        last = cut
    return events + decoder.close()


def run_stream(raw: bytes, times=None):
    """Feed a stream event by event; chunk i arrives at times[i] seconds (default i * 0.1)."""
    acc = StreamAccumulator()
    done = False
    for i, data in enumerate(decode_all(raw, [])):
        chunk, is_done = parse_event(data)
        done = done or is_done
        if chunk is not None:
            acc.add(chunk, times[i] if times else i * 0.1)
    return acc, done


def sse(*chunks, done=True) -> bytes:
    out = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(**d):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}]}


def finish(reason):
    return {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def usage(prompt, completion):
    return {"id": "chatcmpl-1", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


ROLE = delta(role="assistant", content="")


@pytest.mark.parametrize("name", ["stream-reasoning-both-fields.sse", "stream-reasoning-content-only.sse"])
def test_captured_reasoning_streams_split_at_every_byte(name):
    raw = shared_fixture(name)
    whole = decode_all(raw, [])
    for cut in range(1, len(raw)):
        assert decode_all(raw, [cut]) == whole, f"split at byte {cut}"
    acc, _ = run_stream(raw)
    # reasoning is a token: TTFT is set although no content came; both fields count once
    assert acc.first_token_s is not None and acc.first_output_s is None
    assert acc.reasoning == (["好的"] if "both" in name else ["Okay"])


def test_role_chunk_is_not_a_token_and_usage_gives_the_counts():
    raw = sse(ROLE, delta(reasoning="Let me think."), delta(content="Hello"), delta(content=" there"),
              finish("stop"), usage(12, 4))
    acc, done = run_stream(raw, times=[0.010, 0.125, 0.200, 0.250, 0.26, 0.26, 0.26])
    rec = acc.record(end_s=0.27, done=done)
    assert rec.ok and rec.ttft_ms == pytest.approx(125) and rec.ttfo_ms == pytest.approx(200)
    assert rec.text == "Hello there" and rec.reasoning == "Let me think."
    assert rec.completion_tokens == 4 and rec.prompt_tokens == 12
    assert rec.decode_tok_s == pytest.approx(3 / 0.125)  # (4 - 1) tokens over first..last token
    assert rec.e2e_tok_s == pytest.approx(4 / 0.27)
    assert rec.finish_reason == "stop"


def test_multi_token_chunks_use_usage_not_chunk_count():
    raw = sse(ROLE, delta(content="one two three "), delta(content="four five six"), finish("stop"), usage(5, 6))
    acc, done = run_stream(raw, times=[0.0, 0.1, 0.2, 0.2, 0.2])
    rec = acc.record(end_s=0.2, done=done)
    assert rec.completion_tokens == 6 and rec.decode_tok_s == pytest.approx(5 / 0.1)


def test_missing_usage_means_unknown_tokens():
    acc, done = run_stream(sse(ROLE, delta(content="Hi"), finish("stop")))
    rec = acc.record(end_s=0.3, done=done)
    assert rec.ok and rec.completion_tokens is None and rec.decode_tok_s is None and rec.e2e_tok_s is None


def test_stream_without_tokens_is_a_failure_not_zero_ms():
    acc, done = run_stream(sse(ROLE, finish("stop"), usage(5, 0)))
    rec = acc.record(end_s=0.05, done=done)
    assert not rec.ok and rec.ttft_ms is None and "without any token" in rec.error


def test_stream_that_ends_early():
    acc, done = run_stream(sse(ROLE, delta(content="Partial"), done=False))
    rec = acc.record(end_s=0.1, done=done)
    assert not rec.ok and "ended early" in rec.error and rec.text == "Partial"


def test_tool_call_fragments_are_joined_then_parsed():
    raw = sse(ROLE,
              delta(tool_calls=[{"index": 0, "id": "call-1", "type": "function",
                                 "function": {"name": "web_search", "arguments": None}}]),
              delta(tool_calls=[{"index": 0, "function": {"arguments": '{"que'}}]),
              delta(tool_calls=[{"index": 0, "function": {"arguments": ""}}]),
              delta(tool_calls=[{"index": 0, "function": {"arguments": 'ry": "DGX'}}]),
              delta(tool_calls=[{"index": 0, "function": {"arguments": ' Spark"}'}}]),
              finish("tool_calls"), usage(40, 9))
    acc, done = run_stream(raw)
    rec = acc.record(end_s=1.0, done=done)
    [call] = rec.tool_calls
    assert call.name == "web_search" and call.parsed == {"query": "DGX Spark"} and call.error is None
    assert rec.ttfo_ms == pytest.approx(100)  # the tool call's first delta is output
    assert rec.finish_reason == "tool_calls"


def test_broken_tool_arguments_are_reported():
    raw = sse(ROLE, delta(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": '{"a": '}}]),
              finish("tool_calls"))
    acc, done = run_stream(raw)
    [call] = acc.record(end_s=1, done=done).tool_calls
    assert call.parsed is None and "not valid JSON" in call.error


def test_crlf_comments_and_multiline_data():
    raw = b": keep-alive\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: [DONE]\r\n\r\n"
    for cut in range(1, len(raw)):
        assert decode_all(raw, [cut]) == ['{"a":\n1}', "[DONE]"]


def test_server_error_inside_stream():
    acc, done = run_stream(sse(ROLE, {"error": {"message": "EngineDeadError", "code": 500}}, done=False))
    rec = acc.record(end_s=0.1, done=done)
    assert not rec.ok and "EngineDeadError" in rec.error


def test_non_streaming_message():
    body = {"choices": [{"message": {"role": "assistant", "content": None, "reasoning": "hmm",
                                     "tool_calls": [{"id": "c", "type": "function",
                                                     "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
                         "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 7}}
    rec = record_from_message(body, latency_s=0.5)
    assert rec.ok and rec.tool_calls[0].parsed == {"x": 1} and rec.reasoning == "hmm"
    assert rec.ttft_ms is None and rec.e2e_tok_s == pytest.approx(14)
