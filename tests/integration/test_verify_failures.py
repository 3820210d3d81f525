"""deploy-and-verify rolls back on each kind of failing gate: a crash during the suite, memory beyond
the headroom, a decode rate below its gate, a tool parser that swallows the answers. A stack of its own (apart from test_verify.py's, so that
both modules can run at once), first deployed and verified once: the release the tests roll back to.
Each test checks what runs on the host afterwards."""

from __future__ import annotations

import json

import pytest

from sparkkit.cli.main import main

from .test_verify import FAST, assert_rolled_back, env_of, failed_gates, prepare, verify

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def good(stack):
    """The stack after one deploy-and-verify that passed (the standard suite, as in test_verify.py's
    tests after its first)."""
    prepare(stack, suites=["standard"])
    code = main(stack.args("deploy-and-verify", "--reports-dir", str(stack.dir / "reports")))
    assert code == 0, "the first deploy-and-verify (the release to roll back to) did not pass"
    return stack


def test_a_crash_during_the_suite_rolls_back(good, capsys):
    before = good.current()
    good.set_service("vllm-annie", env={"SIM_EXIT_AFTER_REQUESTS": "30"})
    code, out, err, report, _ = verify(good, capsys)
    good.set_service("vllm-annie", env={"SIM_EXIT_AFTER_REQUESTS": ""})
    assert code == 1 and out.startswith("FAIL")
    assert ("host", "zero crashes") in failed_gates(report)
    crash = next(c for c in report["crashes"] if c["service"] == "vllm-annie")
    assert any("restarted" in p or "crash signature" in p for p in crash["problems"])
    assert_rolled_back(good, report, before)
    assert not any(e.startswith("SIM_EXIT_AFTER_REQUESTS=3") for e in env_of(good, "vllm-annie"))


def test_memory_beyond_the_headroom_rolls_back(good, capsys):
    before = good.current()
    with open("/proc/meminfo") as fh:
        avail_gib = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable")) / 1024 / 1024
    # the gate sits 0.5 GiB under what is free now; the new release takes 1.5 GiB more
    good.set_service("context-engine", env={"SIM_MEMORY_MIB": "1536"})
    code, out, err, report, _ = verify(good, capsys, "-e", f"gates.min_headroom_gib={avail_gib - 0.5:.2f}")
    good.set_service("context-engine", env={"SIM_MEMORY_MIB": "0"})
    assert code == 1
    assert failed_gates(report) == {("host", "memory headroom")}
    row = next(r for r in report["memory"]["services"] if r["service"] == "context-engine")
    assert row["used_mib"] >= 1536
    assert_rolled_back(good, report, before)


def test_decode_slower_than_its_gate_rolls_back(good, capsys):
    before = good.current()
    good.set_service("vllm-nemotron", env={"SIM_DECODE_TOK_S": "600"})  # below the gate, above 50% of 1000
    code, out, err, report, _ = verify(good, capsys, "-e", "services.vllm-nemotron.gates.decode_tok_s_p50_min=1000")
    good.set_service("vllm-nemotron", env=FAST)
    assert code == 1
    assert ("vllm-nemotron", "decode tok/s p50") in failed_gates(report)
    assert_rolled_back(good, report, before)
    assert "SIM_DECODE_TOK_S=1000" in env_of(good, "vllm-nemotron")


def test_answers_a_tool_parser_swallows_are_failed_requests_and_roll_back(good, capsys):
    """The model starts a tool call it never writes out: vLLM's qwen3_coder parser (the flags the
    inventory renders) swallows everything after <tool_call>, so each stream of the tools suite ends
    with neither content nor a call (issue #17). Those are failed requests, never 0 ms answers."""
    before = good.current()
    garbled = [{"match": ".", "raw": "<tool_call> let me look that up for you"}]
    good.set_service("vllm-annie", env={"SIM_RULES_JSON": json.dumps(garbled)}, probe_suites=["tools"])
    code, out, err, report, _ = verify(good, capsys)
    good.set_service("vllm-annie", env={"SIM_RULES_JSON": ""}, probe_suites=["standard"])
    assert code == 1
    failed = failed_gates(report)
    assert ("host", "failed requests") in failed and ("vllm-annie", "tools accuracy") in failed
    annie = next(p for p in report["probes"] if p["service"] == "vllm-annie")
    records = [r for res in annie["results"] for r in res["records"]]
    assert records and all(not r["ok"] and r["error"] for r in records)  # every request offers tools
    assert_rolled_back(good, report, before)
