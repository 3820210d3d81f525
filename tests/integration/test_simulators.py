"""The rehearsal simulators (testbed/image/) against known truth: each test starts the built
images with `docker run` and the SIM_* variables under test, then checks the wire format, the
counters and the timing with httpx (and curl, for incremental streaming).

Needs a Docker engine and the images from `bash testbed/setup.sh`; without them the tests skip
(and fail when CI is set).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import time

import httpx
import pytest

from testbed.local_sim import ANNIE_FLAGS
from testbed.stack import images_problem

from .conftest import require

# timing is checked against the configured truth: `make test` runs this module alone, after the rest
pytestmark = [pytest.mark.integration, pytest.mark.timing]

PREFIX = "sparkkit-rehearsal"
IMAGES = {s: f"{PREFIX}-{s}:latest" for s in ("vllm", "ollama", "searxng")}
# SPARKKIT_IT_VLLM_IMAGE: a vLLM simulator image of one's own (a checkout's changes, before the shared
# images are rebuilt)
IMAGES["vllm"] = os.environ.get("SPARKKIT_IT_VLLM_IMAGE") or IMAGES["vllm"]
PORTS = {"vllm": 8000, "ollama": 11434, "searxng": 8080}
READY = {"vllm": "/health", "ollama": "/api/tags", "searxng": "/healthz"}
MODEL = "annie"
TOOLS = [{"type": "function", "function": {
    "name": "web_search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
SETTINGS = """use_default_settings: true
search:
  safe_search: 0
  formats: {formats}
server:
  port: 8080
  secret_key: "set-by-SEARXNG_SECRET"
"""


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def docker_ready():
    require(images_problem(*IMAGES.values()))


class Sim:
    def __init__(self, cid: str, service: str):
        self.id = cid
        self.service = service
        out = _docker("port", cid, f"{PORTS[service]}/tcp").stdout.split()
        assert out, f"no published port for {cid}"
        self.url = "http://" + out[0]

    def wait_ready(self, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + READY[self.service], timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.service} simulator not ready: {self.logs()}")

    def logs(self) -> str:
        done = _docker("logs", self.id)
        return done.stdout + done.stderr


class Sims:
    """Starts simulator containers and removes them all at the end."""

    def __init__(self):
        self.ids: list[str] = []

    def start(self, service: str, env: dict | None = None, args: tuple = (), volumes: tuple = (),
              rm: bool = True) -> Sim:
        cmd = ["run", "-d", "-p", f"127.0.0.1::{PORTS[service]}"] + (["--rm"] if rm else [])
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        for volume in volumes:
            cmd += ["-v", volume]
        if service == "vllm" and not args:
            # the parsers the inventory renders for vllm-annie
            args = ("vllm", "serve", "sim/model", "--served-model-name", MODEL, "--max-model-len", "8192",
                    *ANNIE_FLAGS)
        done = _docker(*cmd, IMAGES[service], *args)
        assert done.returncode == 0, done.stderr
        self.ids.append(done.stdout.strip())
        sim = Sim(self.ids[-1], service)
        sim.wait_ready()
        return sim

    def cleanup(self) -> None:
        if self.ids:
            _docker("rm", "-f", *self.ids)
            self.ids.clear()


@pytest.fixture
def sims(docker_ready, request):
    s = Sims()
    request.addfinalizer(s.cleanup)
    return s


@pytest.fixture(scope="module")
def vllm(docker_ready, request):
    """One fast vLLM simulator for the format tests (1 ms per prompt token of prefill)."""
    s = Sims()
    request.addfinalizer(s.cleanup)
    return s.start("vllm", {"SIM_TTFT_MS": "5", "SIM_DECODE_TOK_S": "1000",
                            "SIM_PREFILL_MS_PER_TOKEN": "1", "SIM_REASONING_TOKENS": "5"})


# --- helpers ---------------------------------------------------------------------------------

def chat_payload(prompt: str, *, stream: bool = True, usage: bool = True, thinking: bool | None = None,
                 **extra) -> dict:
    payload = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    if stream and usage:
        payload["stream_options"] = {"include_usage": True}
    if thinking is not None:
        payload["chat_template_kwargs"] = {"enable_thinking": thinking}
    payload.update(extra)
    return payload


def stream_chat(sim: Sim, payload: dict, client: httpx.Client | None = None) -> list[tuple[float, object]]:
    """[(seconds since the request was sent, parsed event or "[DONE]")]; the stream must be chunked."""
    if client is None:
        with httpx.Client(timeout=10) as client:
            return stream_chat(sim, payload, client)
    events = []
    t0 = time.perf_counter()
    with client.stream("POST", sim.url + "/v1/chat/completions", json=payload) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["transfer-encoding"] == "chunked"
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                events.append((time.perf_counter() - t0, data if data == "[DONE]" else json.loads(data)))
    return events


def deltas(events) -> list[dict]:
    return [e["choices"][0]["delta"] for _, e in events if e != "[DONE]" and e["choices"]]


def has_token(delta: dict) -> bool:
    return bool(delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content")
                or delta.get("tool_calls"))


def joined(events, key: str) -> str:
    return "".join(d.get(key) or "" for d in deltas(events))


def usage_of(events) -> dict:
    return events[-2][1]["usage"]


def metrics(sim: Sim) -> dict[str, float]:
    text = httpx.get(sim.url + "/metrics").text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


# --- vLLM: wire format -----------------------------------------------------------------------

def test_stream_structure_role_first_usage_last(vllm):
    events = stream_chat(vllm, chat_payload("What is the capital of France?"))
    objs = [e for _, e in events]
    assert objs[-1] == "[DONE]"
    first, finish, usage = objs[0], objs[-3], objs[-2]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for obj in objs[:-1]:
        assert obj["id"] == first["id"] and obj["id"].startswith("chatcmpl-")
        assert obj["object"] == "chat.completion.chunk" and obj["model"] == MODEL
        assert isinstance(obj["created"], int)
    for obj in objs[:-2]:
        choice = obj["choices"][0]
        assert choice["index"] == 0 and choice["logprobs"] is None
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] == "stop"
    assert all(o["choices"][0]["finish_reason"] is None for o in objs[:-3])
    assert usage["choices"] == []
    # thinking is on by default: 5 reasoning words (SIM_REASONING_TOKENS), </think> (a token the qwen3
    # parser swallows), then the scripted answer
    assert joined(events, "content") == "The capital of France is Paris."
    assert len(joined(events, "reasoning").split()) == 5
    token_chunks = [d for d in deltas(events) if has_token(d)]
    assert usage["usage"] == {"prompt_tokens": 6, "completion_tokens": 5 + 1 + 6, "total_tokens": 6 + 12}
    assert len(token_chunks) == 11  # SIM_CHUNK_TOKENS=1
    body = vllm_raw_stream(vllm, chat_payload("hi", usage=False))
    assert body.endswith(b"data: [DONE]\n\n") and b'"usage"' not in body


def vllm_raw_stream(sim: Sim, payload: dict) -> bytes:
    return httpx.post(sim.url + "/v1/chat/completions", json=payload, timeout=10).content


def test_thinking_off_and_non_streaming_form(vllm):
    events = stream_chat(vllm, chat_payload("What is the capital of France?", thinking=False))
    assert joined(events, "reasoning") == "" and usage_of(events)["completion_tokens"] == 6
    resp = httpx.post(vllm.url + "/v1/chat/completions", timeout=10,
                      json=chat_payload("What is the capital of France?", stream=False))
    body = resp.json()
    assert resp.status_code == 200 and body["object"] == "chat.completion" and body["model"] == MODEL
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] == "The capital of France is Paris."
    assert len(message["reasoning"].split()) == 5 and "reasoning_content" not in message
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18}


def test_max_tokens_finishes_with_length(vllm):
    events = stream_chat(vllm, chat_payload("What is the capital of France?", thinking=False, max_tokens=3))
    assert joined(events, "content") == "The capital of "
    assert events[-3][1]["choices"][0]["finish_reason"] == "length"
    assert usage_of(events)["completion_tokens"] == 3
    body = httpx.post(vllm.url + "/v1/chat/completions", timeout=10,
                      json=chat_payload("hello", stream=False, max_completion_tokens=2)).json()
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 2


def test_tool_call_streams_in_fragments(vllm):
    prompt = "Search the web for the weather forecast in Bengaluru tomorrow."
    events = stream_chat(vllm, chat_payload(prompt, thinking=False, tools=TOOLS, tool_choice="auto"))
    calls = [d["tool_calls"][0] for d in deltas(events) if d.get("tool_calls")]
    head, fragments = calls[0], [c["function"]["arguments"] for c in calls[1:]]
    assert head["index"] == 0 and head["id"].startswith("chatcmpl-tool-") and head["type"] == "function"
    assert head["function"] == {"name": "web_search", "arguments": ""}
    assert all("id" not in c and c["index"] == 0 for c in calls[1:])
    # qwen3_coder: "{", one fragment per finished parameter, "}"
    assert fragments == ["{", '"query": "the weather forecast in Bengaluru tomorrow"', "}"]
    assert json.loads("".join(fragments)) == {"query": "the weather forecast in Bengaluru tomorrow"}
    assert events[-3][1]["choices"][0]["finish_reason"] == "tool_calls"
    # <tool_call>, <function=..>, <parameter=..>, 6 words, </parameter>, </function>, </tool_call>
    assert usage_of(events)["completion_tokens"] == 12
    assert joined(events, "content") == ""
    # not offered, or tool_choice none: the rule's content fallback instead
    for extra in ({}, {"tools": TOOLS, "tool_choice": "none"}):
        events = stream_chat(vllm, chat_payload(prompt, thinking=False, **extra))
        assert not any(d.get("tool_calls") for d in deltas(events))
        assert joined(events, "content") and events[-3][1]["choices"][0]["finish_reason"] == "stop"
    body = httpx.post(vllm.url + "/v1/chat/completions", timeout=10,
                      json=chat_payload(prompt, stream=False, thinking=False, tools=TOOLS)).json()
    message = body["choices"][0]["message"]
    assert message["content"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
    call = message["tool_calls"][0]
    assert call["function"]["name"] == "web_search" and json.loads(call["function"]["arguments"])["query"]
    # the tool's result comes back: answered from it, no second call
    follow = chat_payload(prompt, stream=False, thinking=False, tools=TOOLS)
    follow["messages"] += [message, {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 31 C."}]
    body = httpx.post(vllm.url + "/v1/chat/completions", json=follow, timeout=10).json()
    assert body["choices"][0]["message"]["content"] == "Here is what I found: Sunny, 31 C."
    assert body["choices"][0]["message"]["tool_calls"] == []


def test_errors_and_models(vllm):
    resp = httpx.post(vllm.url + "/v1/chat/completions", json=chat_payload("x", model="other"), timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "NotFoundError"
    models = httpx.get(vllm.url + "/v1/models").json()["data"]
    assert models[0]["id"] == MODEL and models[0]["max_model_len"] == 8192
    text = httpx.post(vllm.url + "/v1/completions", timeout=10,
                      json={"model": MODEL, "prompt": "capital of france", "max_tokens": 2}).json()
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "The capital "


def test_prefill_time_grows_with_the_prompt(vllm):
    short = stream_chat(vllm, chat_payload("hello there", thinking=False))
    long = stream_chat(vllm, chat_payload("word " * 400, thinking=False))
    ttft = [next(t for t, e in ev if e != "[DONE]" and e["choices"] and has_token(e["choices"][0]["delta"]))
            for ev in (short, long)]
    assert usage_of(long)["prompt_tokens"] == 400
    assert ttft[0] < 0.1 and 0.40 <= ttft[1] < 0.5  # 5 ms + 1 ms x 400 prompt tokens


def test_metrics_count_the_requests(vllm):
    label = f'engine="0",model_name="{MODEL}"'
    before = metrics(vllm)
    stream_chat(vllm, chat_payload("What is the capital of France?"))                      # 6 + 12, stop
    stream_chat(vllm, chat_payload("What is the capital of France?", thinking=False, max_tokens=2))  # 6 + 2
    after = metrics(vllm)

    def delta(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    assert delta(f"vllm:prompt_tokens_total{{{label}}}") == 12
    assert delta(f"vllm:generation_tokens_total{{{label}}}") == 14
    assert delta(f'vllm:request_success_total{{engine="0",finished_reason="stop",model_name="{MODEL}"}}') == 1
    assert delta(f'vllm:request_success_total{{engine="0",finished_reason="length",model_name="{MODEL}"}}') == 1
    assert delta(f"vllm:time_to_first_token_seconds_count{{{label}}}") == 2
    assert delta(f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",model_name="{MODEL}"}}') == 2
    assert delta(f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.001",model_name="{MODEL}"}}') == 0
    assert delta(f"vllm:inter_token_latency_seconds_count{{{label}}}") == 11 + 1
    assert 0.009 < delta(f"vllm:time_to_first_token_seconds_sum{{{label}}}") < 0.2
    assert after[f"vllm:num_requests_running{{{label}}}"] == 0
    for name in ("num_requests_waiting", "kv_cache_usage_perc", "num_preemptions_total"):
        assert f"vllm:{name}{{{label}}}" in after
    text = httpx.get(vllm.url + "/metrics").text
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in text
    assert "# TYPE vllm:request_success_total counter" in text


# --- vLLM: variants set by environment ----------------------------------------------------------

def test_reasoning_fields_rules_json_leak_and_chunks(sims):
    rules = [{"match": r"capital of (\w+)", "content": "The capital of {0} is Lyon.",
              "reasoning": "I recall it is Lyon."}]
    both = sims.start("vllm", {"SIM_TTFT_MS": "5", "SIM_DECODE_TOK_S": "1000", "SIM_REASONING_FIELD": "both",
                               "SIM_THINK_LEAK": "1", "SIM_CHUNK_TOKENS": "3",
                               "SIM_RULES_JSON": json.dumps(rules)})
    older = sims.start("vllm", {"SIM_TTFT_MS": "5", "SIM_DECODE_TOK_S": "1000",
                                "SIM_REASONING_FIELD": "reasoning_content"})
    events = stream_chat(both, chat_payload("What is the capital of France?"))
    reasoning = [d for d in deltas(events) if "reasoning" in d]
    assert reasoning and all(d["reasoning"] == d["reasoning_content"] for d in reasoning)
    assert joined(events, "reasoning") == "I recall it is Lyon."
    assert [d["content"] for d in deltas(events) if d.get("content")] == ["The capital of ", "France is Lyon."]
    leak = stream_chat(both, chat_payload("What is the capital of France?", thinking=False))
    assert joined(leak, "content").startswith("<think>") and joined(leak, "reasoning") == ""
    body = httpx.post(both.url + "/v1/chat/completions", timeout=10,
                      json=chat_payload("capital of Spain", stream=False)).json()
    message = body["choices"][0]["message"]
    assert message["reasoning"] == message["reasoning_content"] == "I recall it is Lyon."
    assert message["content"] == "The capital of Spain is Lyon."

    events = stream_chat(older, chat_payload("What is the capital of France?"))
    assert all("reasoning" not in d for d in deltas(events))
    assert len(joined(events, "reasoning_content").split()) == 12  # the default SIM_REASONING_TOKENS
    body = httpx.post(older.url + "/v1/chat/completions", timeout=10,
                      json=chat_payload("nothing scripted", stream=False)).json()
    assert body["choices"][0]["message"]["content"] == "I am a simulator and have no scripted answer for that."


def test_5xx_rate_is_deterministic(sims):
    sim = sims.start("vllm", {"SIM_5XX_RATE": "0.5", "SIM_TTFT_MS": "1", "SIM_DECODE_TOK_S": "1000"})
    statuses = []
    for _ in range(4):
        resp = httpx.post(sim.url + "/v1/chat/completions", json=chat_payload("hi", stream=False), timeout=10)
        statuses.append(resp.status_code)
        if resp.status_code == 500:
            assert resp.json()["error"]["code"] == 500
    assert statuses == [200, 500, 200, 500]


def test_exit_after_requests(sims):
    sim = sims.start("vllm", {"SIM_EXIT_AFTER_REQUESTS": "2", "SIM_TTFT_MS": "1", "SIM_DECODE_TOK_S": "1000"},
                     rm=False)
    assert httpx.post(sim.url + "/v1/chat/completions", json=chat_payload("hi", stream=False),
                      timeout=10).status_code == 200
    events = stream_chat(sim, chat_payload("hi"))  # the second one is still answered in full
    assert events[-1][1] == "[DONE]"
    assert _docker("wait", sim.id, timeout=10).stdout.strip() == "1"
    assert "EngineDeadError: simulated engine death" in sim.logs()


def test_hang_after_requests(sims):
    sim = sims.start("vllm", {"SIM_HANG_AFTER_REQUESTS": "1", "SIM_TTFT_MS": "1", "SIM_DECODE_TOK_S": "1000"})
    assert stream_chat(sim, chat_payload("hi"))[-1][1] == "[DONE]"
    got = []
    with pytest.raises(httpx.ReadTimeout):
        with httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as client:
            with client.stream("POST", sim.url + "/v1/chat/completions", json=chat_payload("hi")) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        got.append(json.loads(line[6:]))
    assert [g["choices"][0]["delta"] for g in got] == [{"role": "assistant", "content": ""}]
    assert httpx.get(sim.url + "/health", timeout=2).status_code == 200


def test_timing_truth(sims):
    """SIM_TTFT_MS=125 and 50 tok/s, measured as the probe measures (DESIGN.md §3)."""
    answer = " ".join(f"w{i}" for i in range(41))
    sim = sims.start("vllm", {"SIM_TTFT_MS": "125", "SIM_DECODE_TOK_S": "50",
                              "SIM_RULES_JSON": json.dumps([{"match": ".", "content": answer}])})
    ttfts, rates = [], []
    client = httpx.Client(timeout=10)  # one keep-alive connection, as a probe uses
    stream_chat(sim, chat_payload("go", thinking=False, max_tokens=1), client)  # warm-up
    for _ in range(3):
        events = stream_chat(sim, chat_payload("go", thinking=False), client)
        times = [t for t, e in events if e != "[DONE]" and e["choices"] and has_token(e["choices"][0]["delta"])]
        tokens = usage_of(events)["completion_tokens"]
        assert tokens == 41
        ttfts.append(times[0] * 1000)
        rates.append((tokens - 1) / (times[-1] - times[0]))
    client.close()
    ttft, rate = statistics.median(ttfts), statistics.median(rates)
    print(f"\nmeasured TTFT {ttfts} ms (truth 125), decode {rates} tok/s (truth 50)")
    assert abs(ttft - 125) <= 25, ttfts
    assert abs(rate - 50) <= 5, rates

    if shutil.which("curl"):  # curl -N sees each event as it is produced, too
        payload = json.dumps(chat_payload("go", thinking=False))
        proc = subprocess.Popen(["curl", "-sN", "-H", "Content-Type: application/json", "-d", payload,
                                 sim.url + "/v1/chat/completions"], stdout=subprocess.PIPE)
        t0, arrivals = time.perf_counter(), []
        for line in proc.stdout:
            if line.startswith(b"data: "):
                arrivals.append(time.perf_counter() - t0)
        assert proc.wait(timeout=10) == 0
        assert arrivals[0] < 0.1 and arrivals[1] > 0.1  # the role chunk at once, then the first token
        assert arrivals[-1] - arrivals[1] > 0.7  # 40 further tokens at 50 tok/s, not one burst


# --- Ollama ------------------------------------------------------------------------------------

def test_ollama_models_embed_pull_and_memory(sims):
    sim = sims.start("ollama", {"SIM_OLLAMA_MODELS": "qwen3-embedding:8b,nomic-embed-text",
                                "SIM_MEMORY_MIB": "64"})
    tags = httpx.get(sim.url + "/api/tags").json()["models"]
    assert [m["name"] for m in tags] == ["nomic-embed-text:latest", "qwen3-embedding:8b"]
    assert {"model", "size", "digest", "details", "modified_at"} <= set(tags[0])
    assert httpx.get(sim.url + "/api/ps").json() == {"models": []}

    def embed(inp, model="qwen3-embedding:8b"):
        return httpx.post(sim.url + "/api/embed", json={"model": model, "input": inp}, timeout=10)

    one, again = embed("Annie likes filter coffee.").json(), embed(["Annie likes filter coffee.", "other"]).json()
    vec = one["embeddings"][0]
    assert len(vec) == 4096 and math.isclose(sum(v * v for v in vec), 1.0, rel_tol=1e-4)
    assert again["embeddings"][0] == vec and again["embeddings"][1] != vec
    assert one["prompt_eval_count"] == 4 and one["total_duration"] >= 20_000_000  # SIM_EMBED_MS=20
    assert [m["name"] for m in httpx.get(sim.url + "/api/ps").json()["models"]] == ["qwen3-embedding:8b"]

    missing = embed("x", model="all-minilm")
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "all-minilm" not found, try pulling it first'}
    pull = httpx.post(sim.url + "/api/pull", json={"model": "all-minilm"}, timeout=10)
    assert [json.loads(line) for line in pull.text.splitlines()][-1] == {"status": "success"}
    assert embed("x", model="all-minilm").status_code == 200
    listed = _docker("exec", sim.id, "ollama", "list")
    assert listed.returncode == 0 and "all-minilm:latest" in listed.stdout

    usage = _docker("exec", sim.id, "python3", "-c",
                    "import os\nfor p in ('/sys/fs/cgroup/memory.current',"
                    " '/sys/fs/cgroup/memory/memory.usage_in_bytes'):\n"
                    "    if os.path.exists(p): print(open(p).read().strip()); break")
    assert int(usage.stdout) >= 64 << 20, usage


# --- SearXNG -----------------------------------------------------------------------------------

def test_searxng_json_html_and_403(sims, tmp_path):
    with_json, without = tmp_path / "json.yml", tmp_path / "html.yml"
    with_json.write_text(SETTINGS.format(formats='["html", "json"]'))
    without.write_text(SETTINGS.format(formats='["html"]'))
    ok = sims.start("searxng", volumes=(f"{with_json}:/etc/searxng/settings.yml:ro",))
    no = sims.start("searxng", volumes=(f"{without}:/etc/searxng/settings.yml:ro",))

    resp = httpx.get(ok.url + "/search", params={"q": "DGX Spark unified memory", "format": "json"})
    body = resp.json()
    assert resp.status_code == 200 and body["query"] == "DGX Spark unified memory"
    assert len(body["results"]) == 5 and body["number_of_results"] > 0
    for key in ("answers", "suggestions", "infoboxes", "unresponsive_engines"):
        assert body[key] == []
    for result in body["results"]:
        assert {"url", "title", "content", "engine", "score"} <= set(result)
    again = httpx.get(ok.url + "/search", params={"q": "DGX Spark unified memory", "format": "json"}).json()
    assert again["results"] == body["results"]
    page = httpx.get(ok.url + "/search", params={"q": "vLLM"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")

    denied = httpx.get(no.url + "/search", params={"q": "vLLM", "format": "json"})
    assert denied.status_code == 403 and "Forbidden" in denied.text
    assert httpx.get(no.url + "/search", params={"q": "vLLM"}).status_code == 200
