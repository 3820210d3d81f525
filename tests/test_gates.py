"""Gate decisions on hand-made probe results, crash facts and memory figures."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from sparkkit.inventory.build import build_config
from sparkkit.host.facts import Container
from sparkkit.verify.gates import crash_facts, evaluate, parse_logs, service_metrics
from sparkkit.inventory.layers import load_host_layers

REPO = Path(__file__).resolve().parent.parent


def cfg(*overrides):
    return build_config(load_host_layers(REPO, "spark", list(overrides)))


def chat_probe(service, ttft=120.0, decode=50.0, failed=0, tools=(16, 16), quality_ok=True):
    records = [{"ok": True, "warmup": False, "ttft_ms": ttft, "decode_tok_s": decode} for _ in range(5)]
    records += [{"ok": False, "warmup": False, "error": "boom", "ttft_ms": None, "decode_tok_s": None}] * failed
    records += [{"ok": True, "warmup": True, "ttft_ms": 9999.0, "decode_tok_s": 1.0}]  # warmups never count
    passed, total = tools
    return {"service": service, "results": [
        {"suite": "standard", "kind": "chat", "records": records, "summary": [], "score": None},
        {"suite": "tools", "kind": "tools", "records": [], "score": {"passed": passed, "total": total,
                                                                       "accuracy": passed / total},
         "summary": [{"case": f"c{i}", "passed": i < passed} for i in range(total)]},
    ], "quality": [{"gate": "no markdown in voice answers", "passed": 5 if quality_ok else 4, "total": 5,
                    "failures": [] if quality_ok else ["simple_greeting: markdown (bold)"]}]}


def container(service, *, cid="a", restarts=0, status="running", health="healthy", oom=False, code=0):
    return Container(service=service, id=cid, name=service, status=status, health=health, restarts=restarts,
                     started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), exit_code=code, oom_killed=oom,
                     image="img", host_ports=())


def by_name(gates):
    return {(g.service, g.name): g for g in gates}


def test_all_gates_pass():
    gates = evaluate(cfg=cfg(), probes=[chat_probe("vllm-nemotron")], headroom_gib=40.0, crashes=[], previous=None)
    assert all(g.passed for g in gates), [g for g in gates if not g.passed]
    names = by_name(gates)
    assert names[("vllm-nemotron", "TTFT p50")].observed == "120.0 ms"
    assert ("vllm-nemotron", "tools accuracy") in names and ("host", "memory headroom") in names


@pytest.mark.parametrize("probe, headroom, gate, words", [
    (chat_probe("vllm-nemotron", ttft=450.0), 40.0, ("vllm-nemotron", "TTFT p50"), "first tokens too slow"),
    (chat_probe("vllm-nemotron", decode=12.0), 40.0, ("vllm-nemotron", "decode tok/s p50"), "decoding too slow"),
    (chat_probe("vllm-nemotron", tools=(11, 16)), 40.0, ("vllm-nemotron", "tools accuracy"), "failing: c11"),
    (chat_probe("vllm-nemotron", quality_ok=False), 40.0, ("vllm-nemotron", "quality gates"), "markdown (bold)"),
    (chat_probe("vllm-nemotron", failed=1), 40.0, ("host", "failed requests"), "vllm-nemotron: 1"),
    (chat_probe("vllm-nemotron"), 10.0, ("host", "memory headroom"), "6.0 GiB short"),
    (chat_probe("vllm-nemotron"), None, ("host", "memory headroom"), "could not be read"),
])
def test_each_gate_can_fail(probe, headroom, gate, words):
    gates = by_name(evaluate(cfg=cfg(), probes=[probe], headroom_gib=headroom, crashes=[], previous=None))
    assert not gates[gate].passed and words in gates[gate].why
    assert sum(not g.passed for g in gates.values()) == 1


def test_thresholds_come_from_the_inventory():
    loose = cfg("services.vllm-nemotron.gates.ttft_p50_max_ms=500", "gates.min_headroom_gib=8")
    gates = by_name(evaluate(cfg=loose, probes=[chat_probe("vllm-nemotron", ttft=450.0)], headroom_gib=10.0,
                             crashes=[], previous=None))
    assert gates[("vllm-nemotron", "TTFT p50")].passed and gates[("host", "memory headroom")].passed
    off = cfg("services.vllm-nemotron.gates.ttft_p50_max_ms=null")
    assert ("vllm-nemotron", "TTFT p50") not in by_name(
        evaluate(cfg=off, probes=[chat_probe("vllm-nemotron")], headroom_gib=40.0, crashes=[], previous=None))


def test_regression_against_the_last_passing_release():
    previous = {"release": "rold", "metrics": {"vllm-nemotron": {"ttft_p50_ms": 100.0, "decode_tok_s_p50": 60.0}}}
    ok = by_name(evaluate(cfg=cfg(), probes=[chat_probe("vllm-nemotron", ttft=119.0, decode=55.0)],
                          headroom_gib=40.0, crashes=[], previous=previous))
    assert ok[("vllm-nemotron", "no TTFT regression")].passed and ok[("vllm-nemotron", "no decode regression")].passed
    bad = by_name(evaluate(cfg=cfg(), probes=[chat_probe("vllm-nemotron", ttft=121.0, decode=53.0)],
                           headroom_gib=40.0, crashes=[], previous=previous))
    assert not bad[("vllm-nemotron", "no TTFT regression")].passed
    assert "+20% of 100.0 in rold" in bad[("vllm-nemotron", "no TTFT regression")].threshold
    assert not bad[("vllm-nemotron", "no decode regression")].passed


def test_crash_facts():
    before = {"a": container("a", restarts=1), "b": container("b"), "c": container("c"), "d": container("d")}
    after = {"a": container("a", restarts=2), "b": container("b", status="exited", code=137, oom=True),
             "c": container("c", cid="new"), "d": container("d")}
    logs = parse_logs("==sparkkit:logs:n0nce:d==\nINFO ok\nEngineDeadError: simulated engine death\n"
                      "==sparkkit:logs:n0nce:a==\n", "n0nce")
    facts = {f.service: f for f in crash_facts(services=["a", "b", "c", "d", "e"], before=before, after=after,
                                                 logs=logs, signatures={"d": ("EngineDeadError",)})}
    assert facts["a"].problems == ["restarted 1 time(s)"]
    assert facts["b"].problems == ["exited (exit code 137)", "OOM-killed"]
    assert facts["c"].problems == ["restarted 1 time(s)"]  # recreated counts as a restart
    assert facts["d"].problems == ["crash signature in the logs: EngineDeadError: simulated engine death"]
    assert facts["e"].problems == ["container missing"]
    gates = by_name(evaluate(cfg=cfg(), probes=[], headroom_gib=40.0, crashes=list(facts.values()), previous=None))
    crash = gates[("host", "zero crashes")]
    assert not crash.passed and crash.observed == "5" and "b: exited" in crash.why


def test_service_metrics_pool_measured_chat_records():
    m = service_metrics(chat_probe("x", ttft=100.0, decode=40.0, failed=2))
    assert m == {"ttft_p50_ms": 100.0, "decode_tok_s_p50": 40.0, "decode_source": "client",
                 "decode_sources": {"client": 5}, "failed_requests": 2, "accuracy": {"tools": 1.0}}


def test_charts_are_svg_with_every_series():
    from xml.etree import ElementTree

    from sparkkit.verify.charts import bar_chart, line_chart

    svg = line_chart({"a (ten_turns)": [(1, 100.0), (2, 150.0), (3, None)], "b": [(1, 90.0)]},
                     title="TTFT", x_label="turn", y_label="ms")
    root = ElementTree.fromstring(svg)
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert "a (ten_turns)" in svg
    bars = ElementTree.fromstring(bar_chart([("x", 1.5), ("y", 0.5)], title="Memory", y_label="GiB",
                                            line=("headroom 3.0 GiB", 3.0)))
    assert len([r for r in bars.iter("{http://www.w3.org/2000/svg}rect") if r.get("fill") != "white"]) == 2


def test_a_container_cannot_forge_a_log_section():
    """A service that prints marker lines (without this run's nonce, or with a guessed one) cannot move
    its crash lines to another service's section or out of sight."""
    text = ("==sparkkit:logs:4f2a:d==\n"
            "==sparkkit:logs:a==\n"  # the marker format without a nonce
            "==sparkkit:logs:0000:ghost==\n"  # a guessed nonce
            "EngineDeadError: hidden?\n"
            "==sparkkit:logs:4f2a:a==\n"
            "INFO fine\n")
    logs = parse_logs(text, "4f2a")
    assert set(logs) == {"d", "a"}
    assert "EngineDeadError: hidden?" in logs["d"] and logs["a"] == "INFO fine"
    facts = {f.service: f for f in crash_facts(services=["d"], before={"d": container("d")},
                                                 after={"d": container("d")}, logs=logs,
                                                 signatures={"d": ("EngineDeadError",)})}
    assert facts["d"].problems == ["crash signature in the logs: EngineDeadError: hidden?"]


def test_requests_not_run_fail_the_gate_and_are_named():
    probe = chat_probe("vllm-nemotron", failed=1)
    probe["results"][0]["records"] += [{"ok": False, "warmup": False, "result": "not run", "failure": "not run",
                                        "error": "not run: vllm-nemotron stopped answering", "ttft_ms": None,
                                        "decode_tok_s": None}] * 3
    gates = by_name(evaluate(cfg=cfg(), probes=[probe], headroom_gib=40.0, crashes=[], previous=None))
    gate = gates[("host", "failed requests")]
    assert not gate.passed and gate.observed == "4" and gate.why == "vllm-nemotron: 4 (3 not run)"
