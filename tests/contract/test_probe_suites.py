"""The kit's probe runner (sparkkit.probe) with its chat suites against each server, as `sparkkit
probe --url` runs them: every request answered (no failed request, none not run), the server
healthy after, and the records as the kit reads them (tokens from the usage chunk)."""

from __future__ import annotations

import json
import subprocess
import sys

from sparkkit.cli.probe import URL_SUITES, failed_requests, not_run_requests
from sparkkit.probe.runner import Target, probe_service
from sparkkit.probe.suites import load_suites
from tests.contract import cases
from tests.contract.servers import ROOT, healthy


def test_probe_suites_run_without_a_failed_request(server):
    suites = load_suites(ROOT)
    lines: list[str] = []
    target = Target(service="contract", base_url=server.base_url, model=server.model, suites=URL_SUITES,
                    health_path="/v1/models")
    probe = probe_service(target, suites, out=lines.append)
    assert failed_requests([probe]) == 0, "\n".join(lines)
    assert not_run_requests([probe]) == 0
    records = [r for res in probe["results"] for r in res["records"]]
    assert len(records) >= 100  # the five suites' requests, warmups included
    assert all(r["ok"] for r in records), [r["error"] for r in records if not r["ok"]][:5]
    assert all(r["completion_tokens"] and r["prompt_tokens"] for r in records)
    assert {res["suite"] for res in probe["results"]} == set(URL_SUITES)
    # the tiny model answers every suite prompt with the same short sentence, like the simulator's rules
    assert all(r["text"].strip() == cases.SUITE_ANSWER for r in records), {r["text"] for r in records}
    assert healthy(server.base_url)


def test_sparkkit_probe_url_exits_0(server, tmp_path):
    """`sparkkit probe --url` as a person runs it: the model found through /v1/models, the standard
    suite's table printed, records written, exit 0 (no failed request)."""
    out = tmp_path / "probe.json"
    done = subprocess.run([sys.executable, "-m", "sparkkit", "probe", "--url", f"{server.base_url}/v1",
                           "--suite", "standard", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    probes = json.loads(out.read_text())["probes"]
    assert probes[0]["model"] == server.model
    assert failed_requests(probes) == 0
    assert "simple_greeting" in done.stdout
