"""The fleet summary: verdict first, untouched hosts named, relative report links, secrets masked."""

from __future__ import annotations

import json

from sparkkit.fleet.run import FleetRun, HostResult
from sparkkit.fleet.report import write_summary
from sparkkit.inventory.secrets import Secrets


def test_summary_of_a_stopped_rolling_run(tmp_path):
    secret = "s3cr3t-value-123456"
    fleet = FleetRun(spec="a,b,c", hosts=["a", "b", "c"], serial=1, max_fail_percent=None,
                     batches=[["a"], ["b"], ["c"]])
    fleet.results = [
        HostResult(host="a", status="passed", batch=1, release="r1", seconds=4.0, gates_passed=3, gates_total=3,
                   decision="kept", report=str(tmp_path / "a" / "t-r1" / "report.md")),
        HostResult(host="b", status="failed", batch=2, release="r2", previous="r0", seconds=6.5, gates_passed=2,
                   gates_total=3, failed_gates=["vllm/TTFT p50"], decision="rolled back to r0 (healthy)",
                   error=f"boom with {secret}"),
        HostResult(host="c", status="skipped", batch=3, decision="not touched: the rolling run stopped before this batch"),
    ]
    fleet.stopped, fleet.finished, fleet.seconds = "host b failed", "2026-11-27T10:00:10+00:00", 10.6
    folder = write_summary(fleet, tmp_path, Secrets({"searxng_secret": secret}).mask)
    md = (folder / "summary.md").read_text()
    lines = md.splitlines()
    assert lines[2] == "**FAIL — 1/3 hosts passed (1 passed, 1 failed, 1 skipped); rolling run stopped: host b failed**"
    assert "wall time 10.6 s (slowest host 6.5 s, sum over hosts 10.5 s)" in md
    assert "left as they were (not touched): c" in md
    assert "[report](../../a/t-r1/report.md)" in md
    assert "- **b**: failed gates vllm/TTFT p50" in md
    assert secret not in md and secret not in (folder / "summary.json").read_text()
    data = json.loads((folder / "summary.json").read_text())
    assert data["passed"] is False and data["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert [r["status"] for r in data["results"]] == ["passed", "failed", "skipped"]
    assert (tmp_path / "fleet" / "latest").resolve() == folder.resolve()
