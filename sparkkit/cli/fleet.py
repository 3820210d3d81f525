"""`sparkkit deploy-and-verify GROUP|a,b,...`: load and render every host first (bad input: exit 2,
no connection opened), then run the fleet and write the summary."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from tabulate import tabulate

from sparkkit.fleet import plan as fp
from sparkkit.errors import InputError
from sparkkit.fleet.run import HostTarget, run_fleet
from sparkkit.inventory.layers import all_hosts, group_members
from sparkkit.inventory.placement import placement_groups


def load_targets(args, load_one: Callable) -> tuple[list[HostTarget], list[tuple[str, ...]]]:
    project = args.project_dir
    if not args.inventory and not (project / "inventory").is_dir():
        raise InputError(f"no inventory/ under {project.resolve()} (use --project-dir or -i)")
    hosts = fp.resolve_hosts(args.host, hosts=all_hosts(project, args.inventory), groups=group_members(project, args.inventory))
    if args.max_fail_percent is not None and not 0 <= args.max_fail_percent <= 100:
        raise InputError(f"--max-fail-percent must be between 0 and 100, got {args.max_fail_percent:g}")
    if args.max_fail_percent is not None and args.serial is None:
        raise InputError("--max-fail-percent needs --serial (a parallel run has no later batch to stop)")
    targets = []
    for host in hosts:
        one = argparse.Namespace(**{**vars(args), "host": host})
        try:
            cfg, secrets, release = load_one(one)
        except InputError as exc:
            raise InputError(f"host {host}: {exc}") from None
        targets.append(HostTarget(cfg=cfg, secrets=secrets, release=release))
    together = placement_groups([t.cfg for t in targets], selected=hosts)
    fp.batches(hosts, args.serial, together)  # validates --serial
    return targets, together


def run_fleet_command(args, *, load_one: Callable, say: Callable[[str], None]) -> int:
    from sparkkit.fleet.report import write_summary
    from sparkkit.probe.suites import load_suites

    targets, together = load_targets(args, load_one)
    reports_dir = args.reports_dir or args.project_dir / "reports"
    suites = load_suites(args.project_dir)

    def mask(text: str) -> str:
        for t in targets:
            text = t.secrets.mask(text)
        return text

    fleet = run_fleet(targets, spec=args.host, serial=args.serial, max_fail_percent=args.max_fail_percent,
                      suites=suites, reports_dir=reports_dir, break_lock=args.break_lock,
                      out=lambda line: say(mask(line)), together=together)
    folder = write_summary(fleet, reports_dir, mask)
    rows = [[r.host, r.status, r.release or "-", "-" if r.seconds is None else f"{r.seconds:.1f} s", r.decision]
            for r in fleet.results]
    print(mask(fleet.verdict.line))
    print(mask(tabulate(rows, ["host", "result", "release", "time", "decision"])))
    print(f"wall time {fleet.seconds:.1f} s; summary: {folder / 'summary.md'}")
    sys.stdout.flush()
    return fleet.exit_code
