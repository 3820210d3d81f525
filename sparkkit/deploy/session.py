"""What every step on one host shares: the executor (one SSH connection), the config, the printer,
the secrets to mask, stage timing, and the reads and the audit line every command needs.

Every line printed and every audit line is masked with the secrets this run loaded plus the values
the host's kept env files hold (read by each preflight), so a command that did not need the secrets
(rollback, down, verify, status) masks them all the same."""

from __future__ import annotations

import getpass
import json
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable

from sparkkit.deploy.plan import ServiceSpec
from sparkkit.errors import OperationError, RemoteCommandError
from sparkkit.host import commands as cmd
from sparkkit.host.facts import HostFacts, parse_containers, parse_preflight
from sparkkit.host.executor import Executor, Result
from sparkkit.inventory.model import HostConfig
from sparkkit.inventory.secrets import Secrets
from sparkkit.release.render import COMPOSE_FILE, Release

Printer = Callable[[str], None]


class Refused(OperationError):
    """Refused before anything running was changed: a missing or damaged release, an image."""


def brief(exc: BaseException) -> str:
    """An error in one line for a message: a remote command's exit code and its last lines of
    output (the command itself is in the stage), else the error's first line, with its type where
    it is not one of the kit's own errors."""
    if isinstance(exc, RemoteCommandError):
        said = exc.stderr.split("==sparkkit:", 1)[0]  # what the command said, before the kit's own sections
        tail = [line.strip() for line in said.strip().splitlines() if line.strip()][-3:]
        return f"exit {exc.rc}: {' | '.join(tail)[-400:] if tail else '(no output)'}"
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, OperationError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class HostSession:
    """One executor, one config, one printer; what this run spent in each stage."""

    def __init__(self, ex: Executor, cfg: HostConfig, *, out: Printer, secrets: Secrets | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.ex = ex
        self.cfg = cfg
        self.out = lambda text: out(self.secrets.mask(text))
        self.secrets = secrets or Secrets({})
        self.release_key: bytes | None = None  # the host's, from the last preflight
        self.sleep = sleep
        self.stages: dict[str, dict] = {}  # stage -> {"seconds", "round_trips"}, summed over this run
        self.startup_s: dict[str, float] = {}  # service -> seconds from `up` to ready, this run
        self.current_stage = "start"
        self.changed_running = False  # this run has sent a command that changes what runs (compose up, down)

    @contextmanager
    def stage(self, name: str):
        """Time a stage and count its SSH round trips (for the report and `make bench`)."""
        start, trips = time.perf_counter(), self.ex.round_trips
        self.current_stage = name
        try:
            yield
        finally:
            entry = self.stages.setdefault(name, {"seconds": 0.0, "round_trips": 0})
            entry["seconds"] += time.perf_counter() - start
            entry["round_trips"] += self.ex.round_trips - trips

    # -- reads -------------------------------------------------------------------------------
    def preflight_argv(self, images: list[str] = ()) -> list[str]:
        return cmd.preflight(self.cfg.root, self.cfg.project, list(images), runtimes=self.cfg.gpu)

    def facts(self, images: list[str] = ()) -> HostFacts:
        return self.learn(self.ex.run(self.preflight_argv(images), timeout_s=60).stdout)

    def learn(self, preflight_text: str) -> HostFacts:
        """Parse a preflight's output; remember the host's release key and the secret values its
        kept env files hold (so every later line is masked with them)."""
        facts = parse_preflight(preflight_text)
        self.secrets = self.secrets.also_masking(facts.secret_values)
        self.release_key = facts.release_key or self.release_key
        return facts

    def final(self, release: Release) -> Release:
        """``release`` with its final id where the host's key is known; as it is otherwise."""
        return release if release.keyed or self.release_key is None else release.with_key(self.release_key)

    def keyed(self, release: Release) -> Release:
        """``release`` with its final id, keyed by the host's release key (read by the last preflight).
        Raises Refused where it has secret files and the host has no readable key."""
        if release.keyed:
            return release
        if self.release_key is None:
            raise Refused(f"{self.cfg.name}: cannot read or create the release key {self.cfg.root}/release.key "
                          f"(it keys the release id over the secret values); check that the remote user can "
                          f"write {self.cfg.root}")
        return release.with_key(self.release_key)

    def containers(self):
        return parse_containers(self.ex.run(cmd.containers(self.cfg.project), timeout_s=60).stdout)

    def compose_file(self, release_id: str) -> str:
        return f"{self.cfg.root}/releases/{release_id}/{COMPOSE_FILE}"

    def manifest_specs(self, release_id: str) -> list[ServiceSpec]:
        result = self.ex.run(cmd.read_manifest(self.cfg.root, release_id), check=False)
        if result.rc != 0:
            raise Refused(f"{self.cfg.name}: release {release_id} is missing or damaged "
                          f"(no {self.cfg.root}/releases/{release_id}/release.json)")
        try:
            return [ServiceSpec.from_manifest(item) for item in json.loads(result.stdout)["services"]]
        except (ValueError, KeyError, TypeError):
            raise Refused(f"{self.cfg.name}: release {release_id} has a damaged release.json") from None

    # -- the audit log -----------------------------------------------------------------------
    def audit_argv(self, action: str, release: str | None, result: str, **extra) -> list[str]:
        line = json.dumps({"ts": now_iso(), "who": who(), "host": self.cfg.name, "action": action,
                           "release": release, "result": result, **extra}, sort_keys=True)
        return cmd.append_audit(self.cfg.root, self.secrets.mask(line))

    def audit(self, action: str, release: str | None, result: str, **extra) -> None:
        self.run_repeatable(self.audit_argv(action, release, result, **extra))

    def run_repeatable(self, argv: list[str]) -> Result:
        """A command that is safe to repeat (an audit append skips a line already there; an unlock
        removes only this run's lock): once more after any failure (a dropped connection reconnects)."""
        try:
            return self.ex.run(argv)
        except Exception:
            return self.ex.run(argv)
