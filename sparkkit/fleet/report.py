"""The fleet summary: reports/fleet/<time>-<spec>/summary.md and summary.json, beside each host's
own report (reports/<host>/...)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tabulate import tabulate

from sparkkit.fleet.plan import HostStatus
from sparkkit.fleet.run import FleetRun


def render_summary(fleet: FleetRun, folder: Path | None = None) -> str:
    """The summary's markdown; report links relative to ``folder`` (where summary.md goes)."""
    v = fleet.verdict
    mode = ("all hosts in parallel" if fleet.serial is None
            else f"rolling, {fleet.serial} host(s) at a time"
            + (f", --max-fail-percent {fleet.max_fail_percent:g}" if fleet.max_fail_percent is not None else ""))
    timed = [r.seconds for r in fleet.results if r.seconds is not None]
    out = [f"# sparkkit fleet report — {fleet.spec}", "", f"**{v.line}**", "",
           f"- hosts: {', '.join(fleet.hosts)}",
           f"- mode: {mode}; batches: " + " | ".join(", ".join(b) for b in fleet.batches),
           f"- started {fleet.started}, finished {fleet.finished}; wall time {fleet.seconds:.1f} s"
           + (f" (slowest host {max(timed):.1f} s, sum over hosts {sum(timed):.1f} s)" if timed else "")]
    if fleet.stopped:
        untouched = [r.host for r in fleet.results if r.status == HostStatus.SKIPPED]
        out.append(f"- rolling run stopped: {fleet.stopped}; left as they were (not touched): "
                   f"{', '.join(untouched) or 'none'}")
    rows = []
    for r in fleet.results:
        gates = f"{r.gates_passed}/{r.gates_total}" if r.gates_total else "-"
        rows.append([r.host, r.batch or "-", r.status if r.status == HostStatus.PASSED else f"**{r.status}**",
                     r.release or "-", r.previous or "-", gates, "-" if r.seconds is None else f"{r.seconds:.1f} s",
                     r.decision, _rel(r.report, folder)])
    out += ["", "## Hosts", "", tabulate(rows, ["host", "batch", "result", "release", "previous", "gates", "time",
                                                "decision", "report"], tablefmt="github")]
    failing = [r for r in fleet.results if r.failed_gates or r.error]
    if failing:
        out += ["", "## Failures", ""]
        for r in failing:
            if r.failed_gates:
                out.append(f"- **{r.host}**: failed gates {', '.join(r.failed_gates)}")
            if r.error:
                first = r.error.strip().splitlines()[0] if r.error.strip() else ""
                out.append(f"- **{r.host}**: {first}")
    out += ["", "Results: passed (kept), failed (gates failed: rolled back, or a first deploy stopped), "
                "deploy-failed (previous release restored or nothing changed), unreachable (nothing touched), "
                "lost (connection dropped mid-run: state unknown), locked (another run holds the lock), "
                "partner-failed (rolled back because a host of its placement failed), skipped (not touched).", ""]
    return "\n".join(out)


def _rel(path: str | None, folder: Path | None) -> str:
    if not path:
        return "-"
    return f"[report]({os.path.relpath(path, folder)})" if folder else path


def write_summary(fleet: FleetRun, reports_dir: Path, mask) -> Path:
    stamp = (fleet.started or "").replace(":", "").replace("-", "").replace("+0000", "Z").replace("+00:00", "Z")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", fleet.spec)[:60]
    folder = Path(reports_dir) / "fleet" / f"{stamp}-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.md").write_text(mask(render_summary(fleet, folder)))
    (folder / "summary.json").write_text(mask(json.dumps(fleet.to_json(), indent=1, ensure_ascii=False)))
    tmp = folder.parent / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(folder.name, tmp)
    os.replace(tmp, folder.parent / "latest")
    return folder
