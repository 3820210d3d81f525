"""`make bench`, fleet part: deploy-and-verify on 1 namespace host, then on 8 at once (first deploy
each, then a no-op redeploy of the 8), same small stack per host (one vLLM simulator and one app).
Prints the wall time against the slowest host and the sum over hosts, and writes bench-fleet.json.
Nothing is asserted: the machine is shared and noisy; read the ratios."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from tabulate import tabulate  # noqa: E402

from sparkkit.cli.main import main  # noqa: E402
from testbed.fleet import Fleet, host_name, netns  # noqa: E402

HOSTS = int(os.environ.get("FLEET_BENCH_HOSTS", "8"))


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fleet_run(fleet: Fleet, spec: str, *extra: str) -> dict:
    start = time.perf_counter()
    code = main(fleet.args("deploy-and-verify", spec, *extra))
    wall = time.perf_counter() - start
    summary = fleet.summary()
    seconds = [r["seconds"] for r in summary["results"] if r["seconds"] is not None]
    return {"hosts": len(summary["results"]), "exit": code, "wall_s": round(wall, 2),
            "slowest_host_s": max(seconds), "median_host_s": round(statistics.median(seconds), 2),
            "sum_hosts_s": round(sum(seconds), 2), "verdict": summary["verdict"]}


def main_bench() -> int:
    say(f"fleet bench: {HOSTS} namespace hosts (testbed/netns.sh)")
    netns("up", str(HOSTS))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="sparkkit-fleet-bench-") as tmp:
        # all hosts share this machine's CPUs: 16 simulators start at once, so give them time
        fleet = Fleet(Path(tmp), n=HOSTS, start_timeout_s=300)
        # 16 health checks (a runc exec each) on 2 shared cores: slower checks with room to answer,
        # and a TTFT gate that the machine's load cannot fail (this measures time, not the model)
        health = {"interval_s": 3, "timeout_s": 30, "retries": 10, "start_period_s": 300}
        (fleet.dir / "inventory" / "group_vars" / "fleet.yml").write_text(yaml.safe_dump({"services": {
            "vllm": {"healthcheck": health, "gates": {"ttft_p50_max_ms": 10000}},
            "app": {"healthcheck": health}}}))
        try:
            rows["1 host, first deploy"] = fleet_run(fleet, host_name(1), "--serial", "1")  # the fleet path
            fleet.cleanup_host(1)  # so that the 8-host run is a first deploy on every host
            rows[f"{HOSTS} hosts in parallel, first deploy"] = fleet_run(fleet, "fleet")
            rows[f"{HOSTS} hosts in parallel, no-op redeploy"] = fleet_run(fleet, "fleet")
            rows["1 host, no-op redeploy"] = fleet_run(fleet, host_name(1), "--serial", "1")
        finally:
            fleet.cleanup()
            netns("down")
    table = [[name, r["hosts"], f"{r['wall_s']:.1f} s", f"{r['slowest_host_s']:.1f} s", f"{r['median_host_s']:.1f} s",
              f"{r['sum_hosts_s']:.1f} s", f"{r['sum_hosts_s'] / r['wall_s']:.1f}x", r["verdict"]]
             for name, r in rows.items()]
    print("\n## Fleet: deploy-and-verify on several hosts at once\n")
    print(tabulate(table, ["run", "hosts", "wall time", "slowest host", "median host", "sum over hosts",
                           "overlap (sum / wall)", "verdict"], tablefmt="github"))
    one = rows["1 host, first deploy"]["wall_s"]
    many = rows[f"{HOSTS} hosts in parallel, first deploy"]["wall_s"]
    noop = rows[f"{HOSTS} hosts in parallel, no-op redeploy"]["wall_s"] / rows["1 host, no-op redeploy"]["wall_s"]
    print(f"\n{HOSTS} hosts took {many / one:.2f}x the wall time of 1 host for a first deploy, {noop:.2f}x "
          f"for a no-op redeploy "
          f"({os.cpu_count()} CPU cores shared by the kit, {HOSTS} sshds and {2 * HOSTS} simulator containers)")
    out = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
           "cpus": os.cpu_count(), "rows": rows}
    (REPO / "bench-fleet.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
