"""The kit's probe runner (sparkkit.probe) with its chat suites against each server, as `sparkkit
probe --url` runs them: every request answered (no failed request, none not run), the server
healthy after, and the records as the kit reads them (tokens from the usage chunk)."""

from __future__ import annotations

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
