"""`make bench`: the kit's own overhead, measurement fidelity, probe capacity and time to verdict,
each measured side by side with its baseline in the same run on the rehearsal host. Prints tables
and writes bench.json. Nothing here is asserted: machines are shared and noisy, so read the ratios."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tabulate import tabulate  # noqa: E402

from sparkkit.cli.main import build_parser, load  # noqa: E402
from sparkkit.deploy.apply import HostOps  # noqa: E402
from sparkkit.host.ssh import SshExecutor  # noqa: E402
from sparkkit.probe.suites import load_suites  # noqa: E402
from sparkkit.verify.report import write_report  # noqa: E402
from sparkkit.verify.run import deploy_and_verify  # noqa: E402
from testbed.stack import SSH_PORT, TESTBED, Stack  # noqa: E402

FAST = {"SIM_TTFT_MS": "50", "SIM_DECODE_TOK_S": "1000"}
PAIRS = 5


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def kit(stack: Stack, *extra: str, verify: bool = False, quiet=True, worker: bool = True):
    """One sparkkit command in this process: (seconds, round trips, SSH connections, stages, run).
    ``worker=False``: one SSH channel per command (the executor's fallback), for comparison."""
    args = build_parser().parse_args(stack.args("deploy-and-verify" if verify else "deploy", *extra))
    start = time.perf_counter()
    cfg, secrets, release = load(args)
    render_s = time.perf_counter() - start
    ex = SshExecutor(cfg.ssh, cfg.name, use_worker=worker)
    ops = HostOps(ex, cfg, out=(lambda _: None) if quiet else say, secrets=secrets)
    run = None
    try:
        t = time.perf_counter()
        ex.open()  # what the first command would do: timed on its own (SSH handshake, worker shell)
        connect_s = time.perf_counter() - t
        if verify:
            run = deploy_and_verify(ops, release, load_suites(stack.dir))
            t = time.perf_counter()
            write_report(run, stack.dir / "reports", secrets.mask)
            ops.stages["report"] = {"seconds": time.perf_counter() - t, "round_trips": 0}
        else:
            result = ops.deploy(release)
            if result.exit_code:  # a failed deploy is no timing to report
                raise SystemExit(f"bench: {result.message}")
        connections = ex.connections
    finally:
        ex.close()
    ops.stages = {"render": {"seconds": render_s, "round_trips": 0},
                  "connect": {"seconds": connect_s, "round_trips": 0}, **ops.stages}
    return time.perf_counter() - start, ex.round_trips, connections, ops.stages, run


def baseline(stack: Stack, release: str) -> float:
    """The irreducible way: one ssh, then `docker compose up -d --wait` in the release folder."""
    remote = (f"cd {stack.root}/releases/{release} && "
              f"docker compose -p {stack.project} -f docker-compose.yml up -d --wait --quiet-pull")
    argv = ["ssh", "-i", str(TESTBED / "ssh" / "id_ed25519"), "-o", f"UserKnownHostsFile={TESTBED / 'ssh' / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-p", str(SSH_PORT), "root@127.0.0.1", remote]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"baseline failed: {done.stderr[-500:]}")
    return time.perf_counter() - start


def cli_seconds(stack: Stack) -> float:
    start = time.perf_counter()
    subprocess.run([str(REPO / ".venv" / "bin" / "sparkkit"), *stack.args("deploy")], capture_output=True, check=True)
    return time.perf_counter() - start


def overhead(stack: Stack) -> list[dict]:
    rows = []
    say("overhead: no-op redeploys")
    noop = [(kit(stack), baseline(stack, stack.current()), cli_seconds(stack)) for _ in range(PAIRS)]
    k = statistics.median(r[0][0] for r in noop)
    b = statistics.median(r[1] for r in noop)
    rows.append({"case": "no-op redeploy", "sparkkit_s": k, "sparkkit_cli_s": statistics.median(r[2] for r in noop),
                 "baseline_s": b, "ratio": k / b, "round_trips": noop[0][0][1], "ssh_connections": noop[0][0][2],
                 "target": "<= 0.5 s and <= 1.5x"})
    say("overhead: no-op redeploys, one SSH channel per command (no worker shell)")
    plain = [(kit(stack, worker=False), baseline(stack, stack.current())) for _ in range(PAIRS)]
    k2 = statistics.median(r[0][0] for r in plain)
    b2 = statistics.median(r[1] for r in plain)
    rows.append({"case": "no-op, channel per command", "sparkkit_s": k2, "sparkkit_cli_s": None, "baseline_s": b2,
                 "ratio": k2 / b2, "round_trips": plain[0][0][1], "ssh_connections": plain[0][0][2],
                 "target": "(comparison)"})
    rows[0]["stages"] = {n: st["seconds"] for n, st in noop[len(noop) // 2][0][3].items()}
    say("overhead: one env var changed (one service recreated)")
    changed = []
    for i in range(PAIRS):
        before = stack.current()
        run = kit(stack, "-e", f"services.context-engine.env.BENCH_RUN={i}")
        base = baseline(stack, before)  # flips the one service back: also one service recreated
        changed.append((run, base))
    k = statistics.median(r[0][0] for r in changed)
    b = statistics.median(r[1] for r in changed)
    rows.append({"case": "one service changed", "sparkkit_s": k, "sparkkit_cli_s": None, "baseline_s": b,
                 "ratio": k / b, "round_trips": changed[0][0][1], "ssh_connections": changed[0][0][2],
                 "target": "<= 1.5x"})
    stages = changed[-1][0][3]
    return rows, stages


def verdict(stack: Stack) -> tuple[list[dict], float]:
    say("time to verdict: deploy-and-verify (simulators at TTFT 50 ms, 1000 tok/s)")
    seconds, trips, connections, stages, run = kit(stack, "-e", "services.context-engine.env.BENCH_RUN=verdict",
                                                   verify=True)
    waiting = {"health wait", "probes"}
    rows = [{"stage": name, "seconds": st["seconds"], "round_trips": st["round_trips"],
             "kind": "waiting on services" if name in waiting else "kit"} for name, st in stages.items()]
    rows.append({"stage": "total", "seconds": seconds, "round_trips": trips, "kind": f"{connections} SSH connection(s), "
                 f"verdict {'PASS' if run.passed else 'FAIL'}"})
    return rows, seconds


def main() -> int:
    from bench import probe_bench

    results = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), port_offset=300)
        os.environ["SPARKKIT_SECRET_SEARXNG_SECRET"] = "bench-secret"
        for name in ("vllm-annie", "vllm-nemotron"):
            stack.set_service(name, env=FAST)
        try:
            kit(stack)
            rows, stages = overhead(stack)
            results["overhead"] = rows
            results["changed_deploy_stages"] = stages
            results["verdict"], _ = verdict(stack)
        finally:
            stack.cleanup()
    results["fidelity"] = probe_bench.fidelity()
    results["capacity"] = probe_bench.capacity()
    (REPO / "bench.json").write_text(json.dumps(results, indent=1, default=str))

    print(f"sparkkit bench — {results['when']} — {results['machine']}\n")
    print("1. Kit overhead (medians of %d pairs; baseline: ssh + `docker compose up -d --wait`)" % PAIRS)
    print(tabulate([[r["case"], f"{r['sparkkit_s']:.2f} s",
                     "-" if r["sparkkit_cli_s"] is None else f"{r['sparkkit_cli_s']:.2f} s",
                     f"{r['baseline_s']:.2f} s", f"{r['ratio']:.2f}x", r["round_trips"], r["ssh_connections"],
                     r["target"]] for r in results["overhead"]],
                   ["case", "sparkkit (in process)", "sparkkit CLI", "baseline", "ratio", "round trips",
                    "SSH connections", "target"]))
    print("\n   stages of one no-op redeploy: " + ", ".join(f"{n} {v:.2f} s"
                                                        for n, v in results["overhead"][0]["stages"].items()))
    print("\n   stages of one changed deploy:")
    print(tabulate([[n, f"{s['seconds']:.2f} s", s["round_trips"]] for n, s in results["changed_deploy_stages"].items()],
                   ["stage", "time", "round trips"]))
    print("\n2. Measurement fidelity (probe client vs simulator truth)")
    print(tabulate(results["fidelity"], headers="keys", floatfmt=".2f"))
    print("\n3. Probe client capacity (zero-delay simulator; last row at 50 tok/s)")
    print(tabulate(results["capacity"], headers="keys", floatfmt=".2f"))
    print("\n4. Time to verdict (deploy-and-verify, by stage)")
    print(tabulate([[r["stage"], f"{r['seconds']:.2f} s", r["round_trips"], r["kind"]] for r in results["verdict"]],
                   ["stage", "time", "round trips", "what"]))
    print(f"\nwritten: {REPO / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
