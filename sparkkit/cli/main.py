"""Command line: parse arguments, load and validate the inventory, then act on one host.

Exit codes: 0 ok, 1 the operation failed (the message says what was restored), 2 bad input,
3 a restore or rollback failed (the host needs attention), 130 interrupted (Ctrl-C).
Input is validated completely before any SSH connection is opened.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tabulate import tabulate

from sparkkit import __version__
from sparkkit.inventory.build import build_config
from sparkkit.inventory.exposure import exposure_warnings
from sparkkit.inventory.model import HostConfig, accepting_new_host_key
from sparkkit.deploy.outcome import EXIT_ATTENTION, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DeployResult
from sparkkit.errors import InputError, OperationError
from sparkkit.inventory.layers import load_host_layers
from sparkkit.cli.inventory import add_parser as add_inventory_parser, run_inventory
from sparkkit.release.render import Release, render_release
from sparkkit.inventory.secrets import Secrets, load_secrets

EXIT_INPUT = 2  # the other exit codes come with the outcomes (sparkkit.deploy.outcome)
# how stderr opens a failure, by exit code
FAILURE_HEADING = {EXIT_FAILED: "FAILED", EXIT_ATTENTION: "FAILED, THE HOST NEEDS ATTENTION",
                   EXIT_INTERRUPTED: "INTERRUPTED"}

DESCRIPTION = """\
Deploy and verify an LLM stack (vLLM, Ollama, SearXNG, apps) on a DGX Spark or a rehearsal host,
over one SSH connection, as releases that can be rolled back.

The project folder (--project-dir, default: the current folder) holds inventory/, roles/ and
templates/. Exit codes: 0 ok, 1 the operation failed (and says what was restored), 2 bad input,
3 a restore or rollback failed (the host needs attention), 130 interrupted by Ctrl-C (the message
says where; the lock is released and a rerun finishes the job).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2, as bad input does
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sparkkit", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sparkkit {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("host", metavar="HOST", help="a host name from the inventory (deploy-and-verify: "
                                                      "also a group, or a comma-separated list)")
    common.add_argument("-e", "--extra-var", dest="extra_vars", action="append", default=[], metavar="KEY=VALUE",
                        help="override an inventory value (highest precedence), e.g. -e services.searxng.port=8081;"
                             " the value is parsed as YAML; repeatable")
    common.add_argument("--project-dir", type=Path, default=Path(os.environ.get("SPARKKIT_PROJECT", ".")),
                        help="folder with inventory/, roles/, templates/ (default: $SPARKKIT_PROJECT or .)")
    inventory_option(common)
    ssh = argparse.ArgumentParser(add_help=False)
    ssh.add_argument("--accept-new-host-key", action="store_true",
                     help="trust and record an unknown SSH host key (a changed key is always refused)")
    locking = argparse.ArgumentParser(add_help=False)
    locking.add_argument("--break-lock", action="store_true",
                         help="remove a lock left by a run that died, then go on")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_inventory_parser(sub, inventory_options)
    p = sub.add_parser("render", parents=[common], help="render the release locally, touch no host")
    p.add_argument("--out", type=Path, help="write the files here (default: list them)")
    sub.add_parser("diff", parents=[common, ssh],
                   help="show what a deploy would change on the host (secrets masked), and any drift of its "
                        "containers from the current release; changes nothing")
    sub.add_parser("deploy", parents=[common, ssh, locking],
                   help="upload the release, bring it up, switch current; restore the previous release on failure")
    p = sub.add_parser("status", parents=[common, ssh],
                       help="current release and the state of each service, with its drift from the release")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("rollback", parents=[common, ssh, locking],
                       help="bring back a kept release (default: the one before current)")
    p.add_argument("--to", metavar="RELEASE", help="release id to go back to (see `status`)")
    sub.add_parser("down", parents=[common, ssh, locking], help="stop the stack; releases are kept")
    reports = argparse.ArgumentParser(add_help=False)
    reports.add_argument("--reports-dir", type=Path, default=None,
                         help="where reports go (default: reports/ in the project folder)")
    p = sub.add_parser("deploy-and-verify", parents=[common, ssh, locking, reports],
                       help="deploy, run the probe suite, check the gates; keep the release or roll back; write "
                            "the report (HOST may be a group or a comma-separated list: a fleet)",
                       description="Deploy the release, probe every service, read memory and crash facts, and judge "
                                   "the gates. All pass: the release stays. Any fails: the previous release comes "
                                   "back (a first deploy is stopped, unless gates.first_deploy_failure is keep). "
                                   "Exit 0 kept, 1 failed or rolled back, 2 bad input, 3 the rollback failed (the host "
                                   "needs attention), 130 interrupted. Writes "
                                   "reports/<host>/<time>-<release>/. HOST may name a group or a comma-separated "
                                   "list of hosts and groups: every host runs at once (--serial N: N at a time, "
                                   "stopping at the first failed host), each with its own connection, lock and "
                                   "report, plus reports/fleet/<time>-<HOST>/summary.md; exit 0 only when every "
                                   "host passed, 3 when a host needs a person (lost mid-run, or its rollback failed).")
    p.add_argument("--serial", type=int, metavar="N",
                   help="rolling: N hosts at a time; stop after the first batch with a failed host (its "
                        "hosts are rolled back, the rest are not touched)")
    p.add_argument("--max-fail-percent", type=float, metavar="P",
                   help="with --serial: go on while at most P%% of the fleet has failed")
    sub.add_parser("verify", parents=[common, ssh, reports],
                   help="probe and judge the running release without deploying; write the report")
    p = sub.add_parser("probe", parents=[ssh], help="run the probe suite against the host's services, or --url",
                       description="Measure services as the benchmark report did: latency and decode speed, "
                                   "multi-turn scaling, tool calling, MCP browser tools, entity extraction, "
                                   "quality gates, embeddings, web search. Prints tables; --json writes every "
                                   "request's record.")
    p.add_argument("host", metavar="HOST", nargs="?", help="a host from the inventory (or use --url)")
    p.add_argument("--url", help="probe any OpenAI-compatible server, no inventory (e.g. http://127.0.0.1:8000)")
    p.add_argument("--model", help="with --url: the model name (default: the first of /v1/models)")
    p.add_argument("--service", help="only this service of the host")
    p.add_argument("--suite", help="only this suite (standard, multiturn, tools, mcp, extraction, embeddings, "
                                   "websearch, health, or one of the project's suites/)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every record and summary here")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="every request's total deadline (default: the suite's, 120 for chat; docs/probe.md)")
    p.add_argument("-e", "--extra-var", dest="extra_vars", action="append", default=[], metavar="KEY=VALUE",
                   help="override an inventory value, as for the other commands")
    p.add_argument("--project-dir", type=Path, default=Path(os.environ.get("SPARKKIT_PROJECT", ".")),
                   help="folder with inventory/, roles/, templates/ and optional suites/")
    inventory_option(p)
    return parser


def inventory_option(parser) -> None:
    parser.add_argument("-i", "--inventory", action="append", default=[], type=Path, metavar="SOURCE",
                        help="an inventory file or folder, as Ansible's -i (repeatable; default: the project's "
                             "inventory/ folder); group_vars/ and host_vars/ beside each are read")


def inventory_options(parser) -> None:
    """The options of `sparkkit inventory`: those of the other commands, without HOST."""
    parser.add_argument("-e", "--extra-var", dest="extra_vars", action="append", default=[], metavar="KEY=VALUE",
                        help="override an inventory value (highest precedence), as for the other commands")
    parser.add_argument("--project-dir", type=Path, default=Path(os.environ.get("SPARKKIT_PROJECT", ".")),
                        help="folder with inventory/ (default: $SPARKKIT_PROJECT or .)")
    inventory_option(parser)


def load(args) -> tuple[HostConfig, Secrets, Release]:
    project = args.project_dir
    if not args.inventory and not (project / "inventory").is_dir():
        raise InputError(f"no inventory/ under {project.resolve()} (use --project-dir or -i)")
    cfg = build_config(load_host_layers(project, args.host, args.extra_vars, args.inventory))
    if getattr(args, "accept_new_host_key", False):
        cfg = accepting_new_host_key(cfg)
    # deploy and diff need the real values; the other commands do not render what they act on
    missing: list[str] | None = None if args.command in ("deploy", "diff", "deploy-and-verify") else []
    secrets = load_secrets(cfg, missing=missing)
    if args.command == "render":
        for name in missing or ():
            _say(f"warning: secret {name!r} is not set; the rendered env file holds a placeholder "
                 f"(deploy refuses to run without it)")
    return cfg, secrets, render_release(cfg, secrets, project)



def is_fleet(args) -> bool:
    """A group, a list, or --serial: the fleet path; one plain host name: the single-host path."""
    from sparkkit.fleet.plan import names_a_fleet
    from sparkkit.inventory.layers import all_hosts

    if args.serial is not None or args.max_fail_percent is not None:
        return True
    if not args.inventory and not (args.project_dir / "inventory").is_dir():
        return False  # load() says what is missing
    return names_a_fleet(args.host, hosts=all_hosts(args.project_dir, args.inventory))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_file(path: Path, content: bytes, mode: int) -> None:
    """Write ``content`` with ``mode`` from the start: a secret's file is never readable by others, not
    even for a moment (an existing file is replaced, not rewritten in place)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    os.chmod(tmp, mode)  # the umask may have taken bits off
    os.replace(tmp, path)


def cmd_render(args, cfg: HostConfig, secrets: Secrets, release: Release) -> int:
    files = (*release.files, release.manifest(cfg=cfg))
    if not release.keyed:
        _say(f"note: release id {release.id} leaves the secret values out; on the host the id also covers "
             f"them, keyed by the host's {cfg.root}/release.key, so it differs there")
    if args.out is None:
        print(f"release {release.id} for {cfg.name}:")
        for f in files:
            print(f"  {f.path}  ({len(f.content)} bytes, mode {f.mode:04o})")
        return EXIT_OK
    prefix = f"{release.dir}/"
    for f in files:
        rel = f.path[len(prefix):] if f.path.startswith(prefix) else f.path
        target = args.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        write_file(target, f.content, f.mode)
    print(f"release {release.id} for {cfg.name} written to {args.out}")
    return EXIT_OK


def _status_table(status: dict) -> str:
    rows = [[r["service"], r["state"], r["health"], "-" if r["restarts"] is None else r["restarts"],
             _uptime(r["uptime_s"]), r["image"] or "-", r["drift"]] for r in status["services"]]
    head = (f"{status['host']}: release {status['current_release'] or 'none'}  "
            f"(Docker {status['docker'] or '?'}, Compose {status['compose'] or '?'})")
    table = tabulate(rows, headers=["service", "state", "health", "restarts", "uptime", "image", "drift"])
    details = [f"drift: {r['drift_detail']}" for r in status["services"] if r["drift_detail"]]
    return "\n".join([head, table, *details])


def _uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def run_remote(args, cfg: HostConfig, secrets: Secrets, release: Release) -> int:
    """One command on one host. Everything it prints is masked with ``ops.secrets``: this run's
    secrets plus the values the host's kept env files hold (read by the preflight), so a command
    that did not load the secrets still hides them."""
    from sparkkit.deploy.apply import HostOps
    from sparkkit.deploy.diff import diff_against_host
    from sparkkit.host.connect import executor_for

    ex = executor_for(cfg)
    ops = HostOps(ex, cfg, out=_say, secrets=secrets)
    error: OperationError | None = None
    try:
        if args.command == "status":
            status = ops.status()
            print(ops.secrets.mask(json.dumps(status, indent=2) if args.json else _status_table(status)))
            return EXIT_OK
        if args.command == "diff":
            facts = ops.facts()
            release = ops.final(release)
            for warning in exposure_warnings(cfg):
                _say(f"warning: {warning.text}")
            text = diff_against_host(ex, cfg, release, ops.secrets, facts.current_release, facts=facts)
            print(text if text else f"{cfg.name}: no changes (release {release.id} is current)")
            return EXIT_OK
        if args.command in ("deploy-and-verify", "verify"):
            return run_verification(args, ops, release)
        if args.command == "deploy":
            result = ops.deploy(release, break_lock=args.break_lock)
        elif args.command == "rollback":
            result = ops.rollback(args.to, break_lock=args.break_lock)
        else:
            result = ops.down(break_lock=args.break_lock)
        if result.exit_code == EXIT_OK:
            print(ops.secrets.mask(result.message))
            return EXIT_OK
    except OperationError as exc:  # an error that left no outcome (unreachable, a remote command failed)
        error = exc
    finally:
        for notice in ex.notices:
            _say(ops.secrets.mask(notice))
        ex.close()
    if error is not None:  # after the connection's notices, as main() would say it
        print(f"{FAILURE_HEADING[EXIT_FAILED]}: {ops.secrets.mask(str(error))}", file=sys.stderr)
        return EXIT_FAILED
    return _failed(result, ops.secrets)


def _failed(result: DeployResult, secrets: Secrets) -> int:
    """A deploy, rollback or down that did not end well: say so after the connection's notices."""
    print(f"{FAILURE_HEADING[result.exit_code]}: {secrets.mask(result.message)}", file=sys.stderr)
    return result.exit_code


def run_verification(args, ops, release: Release) -> int:
    from sparkkit.probe.suites import load_suites
    from sparkkit.verify.report import console_summary, write_report
    from sparkkit.verify.run import deploy_and_verify, verify_only

    suites = load_suites(args.project_dir)
    if args.command == "verify":
        run = verify_only(ops, suites)
    else:
        run = deploy_and_verify(ops, release, suites, break_lock=args.break_lock)
    folder = write_report(run, args.reports_dir or args.project_dir / "reports", ops.secrets.mask)
    print(ops.secrets.mask(console_summary(run, folder)))
    return run.exit_code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    secrets = Secrets({})
    try:
        if args.command == "inventory":
            return run_inventory(args, say=_say)
        if args.command == "probe":
            from sparkkit.cli.probe import run_probe

            return run_probe(args, say=_say)
        if args.command == "deploy-and-verify" and is_fleet(args):
            from sparkkit.cli.fleet import run_fleet_command

            return run_fleet_command(args, load_one=load, say=_say)
        cfg, secrets, release = load(args)
        if args.command == "render":
            return cmd_render(args, cfg, secrets, release)
        return run_remote(args, cfg, secrets, release)
    except InputError as exc:
        print(f"error: {secrets.mask(str(exc))}", file=sys.stderr)
        return EXIT_INPUT
    except OperationError as exc:  # an error that left no outcome (unreachable, a remote command failed)
        print(f"{FAILURE_HEADING[EXIT_FAILED]}: {secrets.mask(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> int:
    """The `sparkkit` command: ``main``, with a bug in the kit reported as one line (exit 1) instead
    of a traceback. The line names the error's type and where it was raised, not its text, which
    could hold a value the kit would otherwise mask; ``SPARKKIT_DEBUG=1`` shows the traceback."""
    try:
        return main()
    except Exception as exc:  # noqa: BLE001 - the last line of defence; every expected error is handled in main
        if os.environ.get("SPARKKIT_DEBUG"):
            raise
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else ""
        print(f"{FAILURE_HEADING[EXIT_FAILED]}: unexpected {type(exc).__name__}{where} (a bug in sparkkit; "
              f"run again with SPARKKIT_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILED
