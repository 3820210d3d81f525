"""One model across two namespace hosts: a Ray head with vLLM on the first, a Ray worker on the
second (the Ray simulator image); the single endpoint is verified with the probe suite. A worker
that never joins rolls both hosts back; a head that fails its gates takes its worker back too."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
import yaml

from sparkkit.cli.main import main
from testbed.fleet import FAST, Fleet, host_name, netns, netns_problem, pub_addr
from testbed.stack import images_problem, port_base

from .conftest import require

pytestmark = pytest.mark.integration

IMAGE = "sparkkit-rehearsal-vllm-ray:latest"
BIG_PORT, RAY_PORT = 18005 + port_base(), 16379 + port_base()


@pytest.fixture(scope="module")
def pair(testbed, tmp_path_factory):
    require(netns_problem() or images_problem(IMAGE))
    netns("up", "3")
    f = Fleet(tmp_path_factory.mktemp("pair"))
    placed = {"services": {
        "vllm": {"enabled": False},
        "big": {"role": "vllm", "image": IMAGE, "model": "sim/big", "port": BIG_PORT, "container_port": 8000,
                "memory_gib": 0.25, "env": dict(FAST), "flags": {"served-model-name": "big"}, "volumes": [],
                "ulimits": {"memlock": None}, "healthcheck": {"interval_s": 1, "start_period_s": 60},
                "start_timeout_s": 45, "probe_suites": ["fleet-smoke"],
                "gates": {"min_accuracy": {"fleet-smoke": 1.0}},
                "placement": {"hosts": [host_name(1), host_name(2)],
                              "addresses": {host_name(1): pub_addr(1), host_name(2): pub_addr(2)},
                              "ray_port": RAY_PORT,
                              # one Docker engine for both hosts: published ports, not the host's network
                              "network": "bridge"}}}}
    (f.dir / "inventory" / "group_vars" / "pair.yml").write_text(yaml.safe_dump(placed, sort_keys=False))
    yield f
    f.cleanup()
    netns("down")


def run(pair, capsys, *extra):
    code = main(pair.args("deploy-and-verify", "pair", *extra))
    out, err = capsys.readouterr()
    return code, out, err, {r["host"]: r for r in pair.summary()["results"]}


def logs(pair, i) -> str:
    cid = pair.containers(i)["big"]["Id"]
    done = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
    return done.stdout + done.stderr


def test_head_and_worker_start_in_order_and_the_single_endpoint_is_verified(pair, capsys):
    code, out, err, results = run(pair, capsys)
    assert code == 0, out + err
    assert results[host_name(1)]["status"] == results[host_name(2)]["status"] == "passed"
    head, worker = pair.containers(1)["big"], pair.containers(2)["big"]
    assert head["Config"]["Image"] == worker["Config"]["Image"] == IMAGE  # matching images
    assert "--distributed-executor-backend" in head["Args"] and worker["Args"][:1] == ["start"]
    # the head counts itself and the worker; vLLM started only once both were there
    nodes = json.loads(urllib.request.urlopen(f"http://{pub_addr(1)}:{RAY_PORT}/nodes", timeout=5).read())
    assert nodes["alive"] == 2
    assert {n["ip"] for n in nodes["nodes"]} == {pub_addr(1), pub_addr(2)}
    head_log = logs(pair, 1)
    assert head_log.index("Ray runtime started (head)") < head_log.index("worker ")
    assert head_log.index("worker ") < head_log.index("ray cluster has 2 node(s) for world size 2: starting")
    # the probe suite measured the one endpoint, on the head; the worker has nothing to probe
    report1 = json.loads((pair.dir / "reports" / host_name(1) / "latest" / "report.json").read_text())
    report2 = json.loads((pair.dir / "reports" / host_name(2) / "latest" / "report.json").read_text())
    assert "big" in {p["service"] for p in report1["probes"]}
    assert "big" not in {p["service"] for p in report2["probes"]}
    big = next(p for p in report1["probes"] if p["service"] == "big")
    assert all(r["ok"] for res in big["results"] for r in res["records"])


def test_a_worker_that_never_joins_rolls_both_hosts_back(pair, capsys):
    before = {i: pair.current(i) for i in (1, 2)}
    # it cannot start, so no need to wait out the 45 s the good releases get (the restore still has them)
    code, out, err, results = run(pair, capsys, "-e", "services.big.env.SIM_RAY_NEVER_JOIN=1",
                                  "-e", "services.big.start_timeout_s=15")
    assert code == 1, out + err
    for i in (1, 2):
        r = results[host_name(i)]
        assert r["status"] == "deploy-failed", r
        assert r["decision"] == f"deploy failed; restored {before[i]}"
        assert pair.current(i) == before[i]
        assert "SIM_RAY_NEVER_JOIN=1" not in pair.containers(i)["big"]["Config"]["Env"]
    # the restored pair serves again: the worker rejoined the restored head
    nodes = json.loads(urllib.request.urlopen(f"http://{pub_addr(1)}:{RAY_PORT}/nodes", timeout=5).read())
    assert nodes["alive"] == 2


def test_a_head_that_fails_its_gates_takes_its_worker_back(pair, capsys):
    before = {i: pair.current(i) for i in (1, 2)}
    pair.write_host(1, {"services": {"big": {"gates": {"ttft_p50_max_ms": 1}}}})
    try:
        code, out, err, results = run(pair, capsys, "-e", "services.big.env.SIM_TTFT_MS=31")
    finally:
        pair.write_host(1, {})
    assert code == 1, out + err
    assert results[host_name(1)]["status"] == "failed"
    assert results[host_name(2)]["status"] == "partner-failed"
    assert results[host_name(2)]["decision"] == f"rolled back to {before[2]}: placement partner {host_name(1)} failed"
    for i in (1, 2):
        assert pair.current(i) == before[i]
        assert "SIM_TTFT_MS=31" not in pair.containers(i)["big"]["Config"]["Env"]
