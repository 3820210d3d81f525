"""The whole probe suite against the rehearsal stack deployed over SSH, reached through the SSH
tunnel, with the simulators' configured truth to measure against."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from sparkkit.cli.main import main

# the figures are checked against the simulators' truth: `make test` runs this module alone, after the rest
pytestmark = [pytest.mark.integration, pytest.mark.timing]

FAST = {"SIM_TTFT_MS": "10", "SIM_DECODE_TOK_S": "2000"}
TRUTH_TTFT_MS, TRUTH_TOK_S = 125, 200


def probe(stack, capsys, tmp_path, *extra):
    out = tmp_path / "probe.json"
    code = main(["probe", "rehearsal", "--project-dir", str(stack.dir), "--json", str(out), *extra])
    text, err = capsys.readouterr()
    return code, text, err, json.loads(out.read_text()) if out.exists() else None


def by_service(data) -> dict:
    return {p["service"]: p for p in data["probes"]}


def result(probe_data, suite) -> dict:
    return next(r for r in probe_data["results"] if r["suite"] == suite)


@pytest.fixture(scope="module")
def deployed(stack):
    stack.set_service("vllm-annie", env=FAST)
    stack.set_service("vllm-nemotron", env={"SIM_TTFT_MS": str(TRUTH_TTFT_MS), "SIM_DECODE_TOK_S": str(TRUTH_TOK_S)})
    assert main(stack.args("deploy")) == 0
    return stack


def test_every_suite_passes_and_figures_match_the_truth(deployed, capsys, tmp_path):
    code, text, err, data = probe(deployed, capsys, tmp_path)
    assert code == 0, err
    for title in ("Latency & Throughput (standard)", "Multi-turn TTFT Scaling", "Tool Calling (tools): 16/16",
                  "Tool Calling (mcp): 10/10", "Entity Extraction", "Embeddings", "Web Search", "Quality Gates"):
        assert title in text
    services = by_service(data)
    assert set(services) == {"vllm-annie", "vllm-nemotron", "ollama", "searxng", "context-engine",
                             "audio-pipeline"}
    for p in services.values():
        assert all(g["passed"] == g["total"] for g in p["quality"]), p["quality"]
        for res in p["results"]:
            if res["score"]:
                assert res["score"]["passed"] == res["score"]["total"], (p["service"], res["suite"])
    nemo = services["vllm-nemotron"]
    rtt = nemo["rtt_ms"]["p50"]
    for row in result(nemo, "standard")["summary"]:
        # through the SSH tunnel: the truth plus round trips and a busy machine's scheduling delays. This
        # catches a clock started or stopped at the wrong event (0 ms, or the whole answer); the
        # millisecond-level fidelity is `make bench`'s job, on a quiet machine.
        assert TRUTH_TTFT_MS - 5 <= row["ttft_ms"]["p50"] <= TRUTH_TTFT_MS + 60 + 2 * rtt, row
        if row["completion_tokens"]["p50"] >= 20:
            assert row["decode_tok_s"]["p50"] == pytest.approx(TRUTH_TOK_S, rel=0.10), row
    embed = result(services["ollama"], "embeddings")["summary"][0]
    assert embed["dimension"] == [4096] and embed["deterministic"]


def test_a_changed_rule_makes_cases_fail_with_reasons(deployed, capsys, tmp_path):
    rules = [{"match": ".*", "content": "I would rather not use any tools today."}]
    deployed.set_service("vllm-annie", env={"SIM_RULES_JSON": json.dumps(rules)})
    assert main(deployed.args("deploy")) == 0
    code, text, err, data = probe(deployed, capsys, tmp_path, "--service", "vllm-annie", "--suite", "tools")
    assert code == 0  # every request succeeded: the answers are wrong, not failed
    res = result(by_service(data)["vllm-annie"], "tools")
    assert res["score"] == {"passed": 4, "total": 16, "accuracy": 0.25}  # only the direct-answer cases
    failing = {r["case"]: r["reason"] for r in res["summary"] if not r["passed"]}
    assert failing["web_news"] == "expected a call to web_search, got no tool call"
    assert "Tool Calling (tools): 4/16 (25%)" in text


def test_a_service_dying_mid_suite_is_recorded_and_the_suite_goes_on(deployed, capsys, tmp_path):
    deployed.set_service("vllm-annie", env={"SIM_RULES_JSON": "", "SIM_EXIT_AFTER_REQUESTS": "8"})
    assert main(deployed.args("deploy")) == 0
    code, text, err, data = probe(deployed, capsys, tmp_path, "--service", "vllm-annie")
    assert code == 1 and "measured request(s) failed" in err
    annie = by_service(data)["vllm-annie"]
    records = [r for res in annie["results"] for r in res["records"]]
    failed = [r for r in records if not r["ok"]]
    assert failed and all(r["error"] for r in failed)
    assert [res["suite"] for res in annie["results"]] == ["standard", "multiturn", "tools", "mcp", "extraction"]
    gate = next(g for g in annie["quality"] if g["gate"] == "every request succeeded")
    assert gate["passed"] < gate["total"]


def test_searxng_without_json_format_is_a_clear_403(deployed, capsys, tmp_path):
    deployed.set_service("searxng", formats=["html"])
    assert main(deployed.args("deploy")) == 0
    code, text, err, data = probe(deployed, capsys, tmp_path, "--service", "searxng")
    assert code == 1
    row = result(by_service(data)["searxng"], "websearch")["summary"][0]
    assert row["ok"] == 0 and "json format is not enabled" in row["errors"][0]


def test_a_bursty_server_bursts_at_the_client_and_the_suite_still_runs(deployed, capsys, tmp_path):
    """SIM_DELIVERY=burst: the server decodes at TRUTH_TOK_S but the whole answer reaches the client
    within 2 ms, as issue #17 measured on real vLLM. Measured here on the raw SSE arrivals through the
    published port; /metrics keeps the server-side inter-token latency; the probe suite runs with no
    failed request, and the kit's decode figure is labelled (the server's, from /metrics, or a lower
    bound), never the absurd (tokens - 1) / (last - first) of a burst."""
    deployed.set_service("vllm-nemotron", env={"SIM_DELIVERY": "burst", "SIM_BURST_TOKENS": "0"})
    assert main(deployed.args("deploy")) == 0
    # the flags the inventory renders reach the simulator, which says which parsers it plays
    cid = deployed.containers()["vllm-nemotron"]["Id"]
    logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout
    assert "burst delivery; reasoning parser nano_v3, tool parser qwen3_coder" in logs
    url = f"http://127.0.0.1:{deployed.ports['vllm-nemotron']}"
    payload = {"model": "nemotron", "stream": True, "chat_template_kwargs": {"enable_thinking": False},
               "messages": [{"role": "user", "content": "Explain how a refrigerator keeps food cold."}]}
    arrivals = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=payload, timeout=30) as resp:
        t0 = time.perf_counter()
        for line in resp.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"role"' not in line:
                arrivals.append(time.perf_counter() - t0)
    assert len(arrivals) > 100
    assert arrivals[-1] - arrivals[0] < 0.002, (arrivals[0], arrivals[-1])  # one burst
    assert arrivals[0] > len(arrivals) / TRUTH_TOK_S * 0.9  # held until the whole answer was decoded
    text = httpx.get(url + "/metrics", timeout=5).text
    itl = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
           if line.startswith("vllm:inter_token_latency_seconds_") and 'le="' not in line}
    assert itl["vllm:inter_token_latency_seconds_sum"] / itl["vllm:inter_token_latency_seconds_count"] == \
        pytest.approx(1 / TRUTH_TOK_S, rel=0.25)
    code, text, err, data = probe(deployed, capsys, tmp_path, "--service", "vllm-nemotron", "--suite", "standard")
    assert code == 0, err
    records = [r for res in by_service(data)["vllm-nemotron"]["results"] for r in res["records"]]
    assert records and all(r["ok"] for r in records)
    decoded = [r for r in records if r.get("decode_tok_s") is not None and (r.get("completion_tokens") or 0) > 20]
    assert decoded and all(r["decode_source"] in ("server", "e2e lower bound") for r in decoded)
    assert all(r["decode_tok_s"] <= TRUTH_TOK_S * 1.3 for r in decoded), [r["decode_tok_s"] for r in decoded]
    assert any(r["decode_source"] == "server" and r["decode_tok_s"] == pytest.approx(TRUTH_TOK_S, rel=0.3)
               for r in decoded)
