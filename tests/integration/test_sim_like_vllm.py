"""The vLLM simulator over HTTP behaving as vLLM does under the flags the inventory renders (issue
#17): the reasoning and tool parsers' odd cases, bursty delivery seen in the raw SSE arrival times
while /metrics keeps the server-side truth, the model-length 400 and vLLM's error bodies. Each test
runs the simulator as a local process (testbed/local_sim.py): no Docker image, no sshd."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from testbed.local_sim import ANNIE_FLAGS, NEMOTRON_FLAGS, vllm_sim

# bursts and paces are checked in milliseconds: `make test` runs timing modules alone, after the rest
pytestmark = [pytest.mark.integration, pytest.mark.timing]

FAST = {"SIM_TTFT_MS": "5", "SIM_DECODE_TOK_S": "1000", "SIM_REASONING_TOKENS": "4"}
TOOLS = [{"type": "function", "function": {"name": "web_search", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
RULES = [{"match": "no end tag", "raw": "Let me think. The answer is 4."},
         {"match": "garbled", "raw": "<tool_call> I will look that up for you now"},
         {"match": "search the web for (.+)", "tool_call": {"name": "web_search", "arguments": {"query": "{0}"}}},
         {"match": "count", "content": " ".join(f"w{i}" for i in range(40))},
         {"match": ".", "content": "It is 4."}]


def chat(prompt: str, *, stream: bool = True, thinking: bool | None = None, **extra) -> dict:
    payload = {"model": "sim", "messages": [{"role": "user", "content": prompt}], "stream": stream,
               "stream_options": {"include_usage": True}} if stream else {
        "model": "sim", "messages": [{"role": "user", "content": prompt}]}
    if thinking is not None:
        payload["chat_template_kwargs"] = {"enable_thinking": thinking}
    return {**payload, **extra}


def stream(url: str, payload: dict) -> list[tuple[float, dict]]:
    """[(seconds since the request was sent, event)] as the lines arrive, [DONE] left out."""
    out = []
    t0 = time.perf_counter()
    with httpx.stream("POST", url + "/v1/chat/completions", json=payload, timeout=15) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append((time.perf_counter() - t0, json.loads(line[6:])))
    return out


def deltas(events) -> list[dict]:
    return [e["choices"][0]["delta"] for _, e in events if e["choices"]]


def joined(events, key: str) -> str:
    return "".join(d.get(key) or "" for d in deltas(events))


def token_times(events) -> list[float]:
    return [t for t, e in events if e["choices"] and any(e["choices"][0]["delta"].get(k) for k in (
        "content", "reasoning", "reasoning_content", "tool_calls"))]


def metrics(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=5).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def annie():
    with vllm_sim(served_name="sim", env={**FAST, "SIM_RULES_JSON": json.dumps(RULES)}) as url:
        yield url


def test_without_a_reasoning_parser_the_thinking_stays_in_content():
    with vllm_sim(served_name="sim", flags=(), env={**FAST, "SIM_THINK_IN_OUTPUT": "1",
                                                    "SIM_RULES_JSON": json.dumps(RULES)}) as url:
        events = stream(url, chat("what is 2+2"))
        assert joined(events, "reasoning") == ""
        content = joined(events, "content")
        assert content.startswith("<think>") and "</think>" in content and content.endswith("It is 4.")
        # tools with "auto" and no --enable-auto-tool-choice: vLLM's 400
        resp = httpx.post(url + "/v1/chat/completions", json=chat("search the web for cats", stream=False,
                                                                  tools=TOOLS), timeout=10)
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["type"] == "BadRequestError" and error["code"] == 400 and "param" in error
        assert "--enable-auto-tool-choice" in error["message"]


def test_qwen3_without_an_end_tag_leaves_content_empty(annie):
    events = stream(annie, chat("no end tag"))
    assert joined(events, "content") == "" and joined(events, "reasoning") == "Let me think. The answer is 4."
    body = httpx.post(annie + "/v1/chat/completions", json=chat("no end tag", stream=False), timeout=10).json()
    message = body["choices"][0]["message"]
    assert message["content"] is None and message["reasoning"] == "Let me think. The answer is 4."
    # the same answer with thinking off is content
    assert joined(stream(annie, chat("no end tag", thinking=False)), "content") == "Let me think. The answer is 4."


def test_a_swallowed_tool_call_gives_a_stream_with_no_content_delta(annie):
    events = stream(annie, chat("garbled", thinking=False, tools=TOOLS))
    assert token_times(events) == []  # neither content nor a tool call: the parser swallowed it all
    assert events[-2][1]["choices"][0]["finish_reason"] == "stop"
    assert events[-1][1]["usage"]["completion_tokens"] == 9  # <tool_call> and 8 words
    body = httpx.post(annie + "/v1/chat/completions", timeout=10,
                      json=chat("garbled", stream=False, thinking=False, tools=TOOLS)).json()
    assert body["choices"][0]["message"]["content"].startswith("<tool_call>")  # non-streaming gives it back


def test_qwen3_coder_and_hermes_stream_calls_as_vllm_does(annie):
    events = stream(annie, chat("search the web for cats", thinking=False, tools=TOOLS))
    calls = [d["tool_calls"][0] for d in deltas(events) if d.get("tool_calls")]
    assert calls[0]["function"] == {"name": "web_search", "arguments": ""} and calls[0]["type"] == "function"
    assert [c["function"]["arguments"] for c in calls[1:]] == ["{", '"query": "cats"', "}"]
    assert joined(events, "content") == "" and events[-2][1]["choices"][0]["finish_reason"] == "tool_calls"
    # <tool_call>, <function=..>, <parameter=..>, cats, </parameter>, </function>, </tool_call>
    assert events[-1][1]["usage"]["completion_tokens"] == 7
    with vllm_sim(served_name="sim", flags=("--enable-auto-tool-choice", "--tool-call-parser", "hermes"),
                  env={**FAST, "SIM_RULES_JSON": json.dumps(RULES)}) as url:
        events = stream(url, chat("search the web for the weather in Bengaluru tomorrow", tools=TOOLS))
        calls = [d["tool_calls"][0] for d in deltas(events) if d.get("tool_calls")]
        assert calls[0]["function"] == {"name": "web_search"} and calls[0]["id"].startswith("chatcmpl-tool-")
        fragments = [c["function"]["arguments"] for c in calls[1:]]
        assert all(0 < len(f) <= 8 for f in fragments) and len(fragments) > 3
        assert json.loads("".join(fragments)) == {"query": "the weather in Bengaluru tomorrow"}
        # no reasoning parser here: the thinking went out as content before the call
        assert joined(events, "content").rstrip().endswith("</think>")


def test_nemotron_flags_nano_v3_and_deepseek_r1_non_streaming():
    env = {**FAST, "SIM_RULES_JSON": json.dumps(RULES)}
    with vllm_sim(served_name="sim", flags=NEMOTRON_FLAGS, env=env) as nano:
        body = httpx.post(nano + "/v1/chat/completions", timeout=10,
                          json=chat("what is 2+2", stream=False, thinking=False)).json()
        assert body["choices"][0]["message"]["content"] == "It is 4."
        assert body["choices"][0]["message"]["reasoning"] is None
    with vllm_sim(served_name="sim", flags=("--reasoning-parser", "deepseek_r1"), env=env) as r1:
        body = httpx.post(r1 + "/v1/chat/completions", timeout=10,
                          json=chat("what is 2+2", stream=False, thinking=False)).json()
        assert body["choices"][0]["message"]["content"] is None  # the whole answer as reasoning
        assert body["choices"][0]["message"]["reasoning"] == "It is 4."
        assert joined(stream(r1, chat("what is 2+2", thinking=False)), "content") == "It is 4."


def test_error_bodies_and_the_model_length_limit():
    with vllm_sim(served_name="sim", env={**FAST, "SIM_RULES_JSON": json.dumps(RULES)}) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert (client.get("/v1/nothing").status_code, client.get("/v1/nothing").json()) == (
                404, {"detail": "Not Found"})
            assert (client.get("/v1/chat/completions").status_code, client.get("/v1/chat/completions").json()) == (
                405, {"detail": "Method Not Allowed"})
            assert client.post("/health").json() == {"detail": "Method Not Allowed"}
            bad = client.post("/v1/chat/completions", content=b"{not json")
            assert bad.status_code == 400 and bad.json()["error"]["type"] == "BadRequestError"
            too_long = client.post("/v1/chat/completions", json=chat("hello", stream=False, max_tokens=4096))
            assert too_long.status_code == 400  # 1 prompt token + 4096 > --max-model-len's default 4096
            assert too_long.json()["error"]["message"].startswith("'max_tokens' or 'max_completion_tokens' is too "
                                                                  "large: 4096.")
            assert client.post("/v1/chat/completions", json=chat("hello", stream=False, max_tokens=4095)
                               ).status_code == 200
            unknown = client.post("/v1/chat/completions", json=chat("hello", stream=False, model="nope"))
            assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "NotFoundError"


def test_bursty_delivery_is_seen_at_the_client_while_metrics_keep_the_server_truth():
    """40 tokens decoded at 100 tok/s after 50 ms: paced, they arrive over 0.39 s; in one burst, all
    within 2 ms (so the client's (n - 1) / (last - first) explodes, as issue #17 measured on vLLM),
    while /metrics still reports the 10 ms inter-token latency and the 50 ms TTFT."""
    truth = {"SIM_TTFT_MS": "50", "SIM_DECODE_TOK_S": "100", "SIM_RULES_JSON": json.dumps(RULES)}
    with vllm_sim(served_name="sim", env=truth) as paced:
        times = token_times(stream(paced, chat("count", thinking=False)))
        assert len(times) == 40 and times[-1] - times[0] > 0.3
    with vllm_sim(served_name="sim", env={**truth, "SIM_DELIVERY": "burst"}) as url:
        label = 'engine="0",model_name="sim"'
        before = metrics(url)
        events = stream(url, chat("count", thinking=False))
        after = metrics(url)
        times = token_times(events)
        assert len(times) == 40 and events[-1][1]["usage"]["completion_tokens"] == 40
        assert times[-1] - times[0] < 0.002, times  # the whole answer in one burst
        assert times[0] >= 0.05 + 39 / 100 - 0.01  # held until the last token was decoded
        assert 39 / max(times[-1] - times[0], 1e-9) > 10_000  # what a client's decode figure becomes

        def delta(name: str) -> float:
            return after[f"{name}{{{label}}}"] - before.get(f"{name}{{{label}}}", 0.0)

        assert delta("vllm:inter_token_latency_seconds_count") == 39
        assert 0.009 <= delta("vllm:inter_token_latency_seconds_sum") / 39 < 0.02
        assert 0.045 <= delta("vllm:time_to_first_token_seconds_sum") < 0.15
    with vllm_sim(served_name="sim", env={**truth, "SIM_DELIVERY": "burst", "SIM_BURST_TOKENS": "10"}) as url:
        times = token_times(stream(url, chat("count", thinking=False)))
        bursts = [[times[0]]]
        for prev, t in zip(times, times[1:]):
            if t - prev > 0.05:
                bursts.append([])
            bursts[-1].append(t)
        assert [len(b) for b in bursts] == [10, 10, 10, 10], times
        assert all(b[-1] - b[0] < 0.002 for b in bursts), bursts
