"""deploy-and-verify against the rehearsal host: keep on pass, judge without deploying, roll back on a
regression against the last pass, leave a first failed deploy clean, and a report whose numbers are
the records'. Each test checks what runs on the host afterwards. (test_verify_failures.py: the other
failing gates, on a stack of its own, so that both modules can run at once.)"""

from __future__ import annotations

import json
import re
import statistics

import pytest

from sparkkit.cli.main import main
from testbed.stack import Stack

pytestmark = pytest.mark.integration

# fast enough for CI, slow enough to measure steadily on a shared 2-core machine
FAST = {"SIM_TTFT_MS": "50", "SIM_DECODE_TOK_S": "1000"}


def verify(stack, capsys, *extra):
    code = main(stack.args("deploy-and-verify", "--reports-dir", str(stack.dir / "reports"), *extra))
    out, err = capsys.readouterr()
    latest = stack.dir / "reports" / "rehearsal" / "latest"
    report = json.loads((latest / "report.json").read_text())
    return code, out, err, report, latest


def env_of(stack, service) -> list[str]:
    return stack.containers()[service]["Config"]["Env"]


def failed_gates(report) -> set[tuple[str, str]]:
    return {(g["service"], g["name"]) for g in report["gates"] if not g["passed"]}


def prepare(stack, suites=None):
    for name in ("vllm-annie", "vllm-nemotron"):
        stack.set_service(name, env=FAST)
        if suites:
            stack.set_service(name, probe_suites=suites)
    # regression gates loose enough for this machine's noise; the regression test goes well past them
    stack.set_host(gates={"regression_ttft_pct": 50, "regression_decode_pct": 50})
    return stack


def assert_rolled_back(stack, report, before):
    assert report["decision"] == f"rolled back to {before} (healthy)"
    assert stack.current() == before
    containers = stack.containers()
    assert all(c["State"]["Status"] == "running" and c["State"]["Health"]["Status"] == "healthy"
               for c in containers.values())


@pytest.fixture(scope="module")
def good(stack):
    return prepare(stack)


def test_all_gates_pass_and_the_release_is_kept(good, capsys):
    code, out, err, report, latest = verify(good, capsys)
    assert code == 0, out + err
    assert out.splitlines()[0].startswith("PASS — release")  # the verdict comes first
    assert report["passed"] and report["decision"] == "kept"
    assert good.current() == report["release"]
    assert set(good.containers()) == {"vllm-annie", "vllm-nemotron", "ollama", "searxng", "context-engine",
                                      "audio-pipeline"}
    md = (latest / "report.md").read_text()
    assert md.splitlines()[2].startswith("**PASS")
    for section in ("## Gates", "## Memory Profile", "## Startup Time", "## Crash Facts", "## Effective Settings",
                    "Latency & Throughput (standard)", "Tool Calling (tools): 16/16", "![TTFT p50 per turn]"):
        assert section in md, section
    assert (latest / "ttft-per-turn.svg").read_text().startswith("<svg")
    assert (latest / "memory.svg").read_text().startswith("<svg")
    # the report's numbers are the records' numbers
    nemo = next(p for p in report["probes"] if p["service"] == "vllm-nemotron")
    ttfts = [r["ttft_ms"] for res in nemo["results"] if res["kind"] == "chat" for r in res["records"]
             if not r["warmup"] and r["ok"]]
    assert report["metrics"]["vllm-nemotron"]["ttft_p50_ms"] == pytest.approx(statistics.median(ttfts))
    gate = next(g for g in report["gates"] if g["service"] == "vllm-nemotron" and g["name"] == "TTFT p50")
    assert gate["observed"] == f"{statistics.median(ttfts):.1f} ms"
    standard = next(res for res in nemo["results"] if res["suite"] == "standard")
    greeting = [r["ttft_ms"] for r in standard["records"] if r["case"] == "simple_greeting" and not r["warmup"]]
    assert re.search(rf"\| simple_greeting\s+\| {statistics.median(greeting):.0f} ms", md)
    # results kept on the host for the next regression check
    assert (good.root / "results" / "last-pass").read_text().strip() == report["release"]
    assert "SECRET" not in md or "********" in md
    entry = good.audit()[-1]
    assert entry["action"] == "verify" and entry["result"] == "pass"
    # the other scenarios need only the standard suite (it does not change the release)
    for name in ("vllm-annie", "vllm-nemotron"):
        good.set_service(name, probe_suites=["standard"])


def test_verify_judges_the_running_release_and_changes_nothing(good, capsys):
    before = {name: c["Id"] for name, c in good.containers().items()}
    release = good.current()
    code = main(good.args("verify", "--reports-dir", str(good.dir / "reports")))
    out, err = capsys.readouterr()
    assert code == 0, out + err
    report = json.loads((good.dir / "reports" / "rehearsal" / "latest" / "report.json").read_text())
    assert report["action"] == "verify" and report["passed"] and report["release"] == release
    assert {name: c["Id"] for name, c in good.containers().items()} == before and good.current() == release
    # a failing gate makes verify exit 1, still without touching anything
    code = main(good.args("verify", "--reports-dir", str(good.dir / "reports"),
                          "-e", "services.vllm-nemotron.gates.ttft_p50_max_ms=1"))
    out, _ = capsys.readouterr()
    assert code == 1 and out.startswith("FAIL") and "vllm-nemotron/TTFT p50" in out
    assert {name: c["Id"] for name, c in good.containers().items()} == before and good.current() == release


def test_a_regression_against_the_last_pass_rolls_back(good, capsys):
    before = good.current()
    good.set_service("vllm-nemotron", env={"SIM_TTFT_MS": "150"})  # well within 300 ms, but 3x the last pass
    code, out, err, report, _ = verify(good, capsys)
    good.set_service("vllm-nemotron", env=FAST)
    assert code == 1
    assert failed_gates(report) == {("vllm-nemotron", "no TTFT regression")}
    assert report["baseline"]["release"] == before
    assert_rolled_back(good, report, before)


def test_a_first_deploy_that_fails_leaves_the_host_clean(good, tmp_path_factory, capsys):
    fresh = Stack(tmp_path_factory.mktemp("first"), port_offset=100)
    try:
        prepare(fresh, suites=["standard"])
        code, out, err, report, _ = verify(fresh, capsys, "-e",
                                           "services.vllm-nemotron.gates.decode_tok_s_p50_min=1000000")
        assert code == 1 and "stopped: first deploy failed its gates" in report["decision"]
        assert fresh.containers() == {}
        assert fresh.current() is None
        assert not (fresh.root / "results" / "last-pass").exists()
    finally:
        fresh.cleanup()
