"""Fleet deploy-and-verify against namespace hosts (each its own address and sshd): parallel, a
failing host rolled back while the others keep theirs, a cut-off host reported unreachable, a
rolling run that stops, a link cut mid-deploy, and bad input refused before any connection."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from sparkkit.cli.main import main
from testbed.fleet import Fleet, host_name, netns, netns_problem, pub_addr

from .conftest import require

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(testbed, tmp_path_factory):
    require(netns_problem())
    netns("up", "3")
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    yield f
    for i in (1, 2, 3):
        netns("heal", str(i))
    f.cleanup()
    netns("down")


def run(fleet, capsys, spec, *extra):
    code = main(fleet.args("deploy-and-verify", spec, *extra))
    out, err = capsys.readouterr()
    return code, out, err


def by_host(summary) -> dict[str, dict]:
    return {r["host"]: r for r in summary["results"]}


def test_a_group_deploys_in_parallel_each_host_with_its_own_report(fleet, capsys):
    code, out, err = run(fleet, capsys, "fleet")
    assert code == 0, out + err
    summary = fleet.summary()
    assert summary["passed"] and summary["verdict"] == "PASS — 3/3 hosts passed"
    assert summary["batches"] == [[host_name(1), host_name(2), host_name(3)]]
    results = by_host(summary)
    spans = []
    for i in (1, 2, 3):
        r = results[host_name(i)]
        assert r["status"] == "passed" and r["gates_passed"] == r["gates_total"] > 0
        assert fleet.current(i) == r["release"]
        containers = fleet.containers(i)
        assert set(containers) == {"vllm", "app"}
        # each host published on its own address
        bindings = containers["vllm"]["HostConfig"]["PortBindings"]["8000/tcp"]
        assert bindings[0]["HostIp"] == pub_addr(i)
        report = (fleet.dir / "reports" / host_name(i) / "latest" / "report.json")
        data = __import__("json").loads(report.read_text())
        assert data["decision"] == "kept" and data["host"] == host_name(i)
        spans.append((datetime.fromisoformat(data["started"]), datetime.fromisoformat(data["finished"])))
    # they ran at the same time: every host had started before any had finished
    assert max(s for s, _ in spans) <= min(f for _, f in spans)
    md = (fleet.dir / "reports" / "fleet" / "latest" / "summary.md").read_text()
    assert md.splitlines()[2] == "**PASS — 3/3 hosts passed**"
    for i in (1, 2, 3):
        assert host_name(i) in md
    assert "PASS — 3/3 hosts passed" in out


def test_a_failing_host_is_rolled_back_while_the_others_keep_the_new_release(fleet, capsys):
    before = {i: fleet.current(i) for i in (1, 2, 3)}
    fleet.write_host(2, {"services": {"vllm": {"gates": {"ttft_p50_max_ms": 1}}}})  # cannot pass
    try:
        code, out, err = run(fleet, capsys, "fleet", "-e", "services.vllm.env.SIM_TTFT_MS=31")
    finally:
        fleet.write_host(2, {})
    assert code == 1, out + err
    results = by_host(fleet.summary())
    assert results[host_name(2)]["status"] == "failed"
    assert "vllm/TTFT p50" in results[host_name(2)]["failed_gates"]
    assert fleet.current(2) == before[2]  # rolled back
    assert results[host_name(2)]["decision"] == f"rolled back to {before[2]} (healthy)"
    assert "SIM_TTFT_MS=30" in fleet.containers(2)["vllm"]["Config"]["Env"]
    for i in (1, 3):
        assert results[host_name(i)]["status"] == "passed"
        assert fleet.current(i) == results[host_name(i)]["release"] != before[i]
        assert "SIM_TTFT_MS=31" in fleet.containers(i)["vllm"]["Config"]["Env"]
    assert fleet.summary()["verdict"].startswith("FAIL — 2/3 hosts passed")


def test_a_cut_off_host_is_reported_unreachable_and_the_others_go_on(fleet, capsys):
    before3 = fleet.current(3)
    audit3 = len(fleet.audit(3))
    netns("cut", "3")
    try:
        code, out, err = run(fleet, capsys, f"{host_name(1)},{host_name(3)}", "-e", "services.vllm.env.SIM_TTFT_MS=32")
    finally:
        netns("heal", "3")
    assert code == 1, out + err
    results = by_host(fleet.summary())
    assert set(results) == {host_name(1), host_name(3)}
    assert results[host_name(3)]["status"] == "unreachable"
    assert "cannot connect to 10.77.0.13:22" in results[host_name(3)]["error"]
    assert results[host_name(1)]["status"] == "passed"
    assert "SIM_TTFT_MS=32" in fleet.containers(1)["vllm"]["Config"]["Env"]
    assert fleet.current(3) == before3 and len(fleet.audit(3)) == audit3  # not touched
    report = (fleet.dir / "reports" / host_name(3) / "latest" / "report.md").read_text()
    assert "host unreachable; nothing on it was touched" in report


def test_rolling_stops_at_the_first_failed_host_and_leaves_the_rest_untouched(fleet, capsys):
    before = {i: fleet.current(i) for i in (1, 2, 3)}
    audits = {i: len(fleet.audit(i)) for i in (1, 2, 3)}
    fleet.write_host(1, {"services": {"vllm": {"gates": {"ttft_p50_max_ms": 1}}}})
    try:
        code, out, err = run(fleet, capsys, "fleet", "--serial", "1", "-e", "services.vllm.env.SIM_TTFT_MS=33")
    finally:
        fleet.write_host(1, {})
    assert code == 1, out + err
    summary = fleet.summary()
    assert summary["batches"] == [[host_name(1)], [host_name(2)], [host_name(3)]]
    assert summary["stopped"] == f"host {host_name(1)} failed"
    results = by_host(summary)
    assert results[host_name(1)]["status"] == "failed" and fleet.current(1) == before[1]
    for i in (2, 3):
        assert results[host_name(i)]["status"] == "skipped"
        assert fleet.current(i) == before[i] and len(fleet.audit(i)) == audits[i]
        assert "SIM_TTFT_MS=33" not in fleet.containers(i)["vllm"]["Config"]["Env"]
    md = (fleet.dir / "reports" / "fleet" / "latest" / "summary.md").read_text()
    assert f"left as they were (not touched): {host_name(2)}, {host_name(3)}" in md


def test_a_link_cut_mid_deploy_is_reported_lost_and_the_others_finish(fleet, capsys):
    # a slow start on host 2 leaves time to cut its link while the deploy waits for health
    fleet.write_host(2, {"services": {"vllm": {"env": {"SIM_STARTUP_DELAY_S": "15"}}}})
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=main(fleet.args(
        "deploy-and-verify", "fleet", "-e", "services.vllm.env.SIM_TTFT_MS=34"))))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not (fleet.root(2) / "lock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (fleet.root(2) / "lock").exists(), "host 2 never took its lock"
        time.sleep(3)  # inside the deploy: uploading or waiting for health
        netns("cut", "2")
        thread.join(timeout=300)
    finally:
        netns("heal", "2")
        fleet.write_host(2, {})
    assert not thread.is_alive()
    capsys.readouterr()
    assert result["code"] == 3  # a host lost mid-run needs a person, as a failed rollback does
    results = by_host(fleet.summary())
    assert results[host_name(2)]["status"] == "lost"
    # the connection dropped, and putting the host right over a new one failed too (it is cut off)
    assert "connection" in results[host_name(2)]["error"].lower()
    assert any(words in results[host_name(2)]["decision"] for words in ("state is unknown", "needs attention"))
    for i in (1, 3):
        assert results[host_name(i)]["status"] == "passed"
    # the run that lost its connection left its lock: the next run needs --break-lock, as it says
    assert (fleet.root(2) / "lock").exists()
    code, out, err = run(fleet, capsys, host_name(2), "--break-lock")
    assert code == 0, out + err


def test_an_unknown_host_or_group_is_bad_input_and_nothing_is_opened(fleet, capsys):
    audits = {i: len(fleet.audit(i)) for i in (1, 2, 3)}
    code, out, err = run(fleet, capsys, f"fleet,{host_name(9)},nogroup")
    assert code == 2
    assert f"unknown host or group '{host_name(9)}', 'nogroup'" in err
    code, out, err = run(fleet, capsys, "fleet", "--serial", "0")
    assert code == 2 and "--serial must be at least 1, got 0" in err
    code, out, err = run(fleet, capsys, "fleet", "--max-fail-percent", "20")
    assert code == 2 and "--max-fail-percent needs --serial" in err
    assert {i: len(fleet.audit(i)) for i in (1, 2, 3)} == audits
