"""/metrics as vLLM exposes it (Prometheus text): the families the kit reads for server-side timing
(issue #17 item 2: TTFT, inter-token latency, queue, prefill, decode and end-to-end time, tokens,
requests), with their types and the model_name label, and a window over one request that moves
them as the request's usage says."""

from __future__ import annotations

import re
import time

import pytest

from tests.contract import cases
from tests.contract.conftest import sim_differs
from tests.contract.wire import get, payload, stream_chat

HISTOGRAMS = ("vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
              "vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds",
              "vllm:request_prefill_time_seconds", "vllm:request_decode_time_seconds")
GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
COUNTERS = ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total")
# what the simulator serves today (testbed/image/vllm_metrics.py); every other family is a named difference
SIM_HAS = {*HISTOGRAMS, *GAUGES, *COUNTERS}  # every family the kit reads (the simulator once lacked five)
SAMPLE = re.compile(r'^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, str], dict[str, list[tuple[dict, float]]]]:
    """Prometheus text -> ({family: type}, {sample name: [(labels, value)]})."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(None, 3)
            types[family] = kind.strip()
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            samples.setdefault(m.group(1), []).append((dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return types, samples


def type_of(types: dict[str, str], sample: str) -> str | None:
    """A sample's family type: prometheus_client names a counter's family without _total."""
    for family in (sample, sample.removesuffix("_total")):
        if family in types:
            return types[family]
    return None


def scrape(server) -> tuple[dict, dict]:
    resp = get(server, "/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return parse(resp.text)


def value(samples: dict, name: str, model: str, **labels) -> float:
    return sum(v for lab, v in samples.get(name, []) if lab.get("model_name") == model
               and all(lab.get(k) == want for k, want in labels.items()))


def _expect_family(server, request, family: str) -> None:
    if family not in SIM_HAS:
        sim_differs(server, request, f"its /metrics has no {family}")


@pytest.mark.parametrize("family", HISTOGRAMS)
def test_histogram_family(server, request, family):
    _expect_family(server, request, family)
    types, samples = scrape(server)
    assert types.get(family) == "histogram"
    for suffix in ("_sum", "_count", "_bucket"):
        assert any(lab.get("model_name") == server.model for lab, _ in samples.get(family + suffix, [])), suffix
    assert any(lab.get("le") == "+Inf" for lab, _ in samples[family + "_bucket"])


@pytest.mark.parametrize("family", GAUGES + COUNTERS)
def test_gauge_and_counter_families(server, request, family):
    _expect_family(server, request, family)
    types, samples = scrape(server)
    assert type_of(types, family) == ("gauge" if family in GAUGES else "counter")
    assert any(lab.get("model_name") == server.model for lab, _ in samples[family])


def test_success_counter_is_labelled_by_finish_reason(server):
    _, samples = scrape(server)
    reasons = {lab.get("finished_reason") for lab, _ in samples["vllm:request_success_total"]}
    assert {"stop", "length", "abort"} <= reasons


def _window(server):
    """Scrape, send one streamed request, scrape again once the engine has published its stats."""
    _, before = scrape(server)
    s = stream_chat(server, payload(server, cases.COUNT, thinking=False))
    m = server.model

    def delta(after, name, **labels):
        return value(after, name, m, **labels) - value(before, name, m, **labels)

    deadline = time.monotonic() + 10  # vLLM's engine publishes its stats a moment after the answer
    while True:
        _, after = scrape(server)
        if delta(after, "vllm:request_success_total", finished_reason="stop") >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return s.usage_chunks[0]["usage"], (lambda name, **labels: delta(after, name, **labels))


def test_one_request_moves_the_counters(server):
    """After one streamed request: one more TTFT, the token counters grow by the request's usage, one
    more success with finished_reason stop."""
    usage, delta = _window(server)
    assert delta("vllm:time_to_first_token_seconds_count") == 1
    assert delta("vllm:time_to_first_token_seconds_sum") > 0
    assert delta("vllm:request_success_total", finished_reason="stop") == 1
    assert delta("vllm:prompt_tokens_total") == usage["prompt_tokens"]
    assert delta("vllm:generation_tokens_total") == usage["completion_tokens"]


def test_one_request_moves_the_timing_histograms(server, request):
    """The same window: one more end-to-end, queue, prefill and decode time, and one inter-token
    latency per token after the first (what server-side decode is computed from)."""
    usage, delta = _window(server)
    for family in ("vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds",
                   "vllm:request_prefill_time_seconds", "vllm:request_decode_time_seconds"):
        assert delta(family + "_count") == 1, family
    assert delta("vllm:inter_token_latency_seconds_count") == usage["completion_tokens"] - 1
    assert delta("vllm:e2e_request_latency_seconds_sum") >= delta("vllm:request_decode_time_seconds_sum") > 0
