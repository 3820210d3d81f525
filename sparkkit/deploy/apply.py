"""Deploy, roll back, stop, and read the state of a release on one host, through an Executor.

The decisions live in ``plan``; this module sequences remote commands and reports progress.
Rollback is the same code path as deploy (``activate``), aimed at a kept release.
"""

from __future__ import annotations

import base64
import getpass
import io
import json
import os
import shlex
import socket
import tarfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sparkkit.host import commands as cmd
from sparkkit.inventory.model import HostConfig
from sparkkit.errors import ConnectionLost, Interrupted, NeedsAttention, OperationError
from sparkkit.host.ssh import Executor
from sparkkit.host.facts import HostFacts, parse_containers, parse_hashed_up, parse_lock, parse_preflight
from sparkkit.deploy.plan import (ServiceSpec, is_noop, judge_start, preflight_problems, prune_candidates,
                           rollback_target, services_to_start, start_waves)
from sparkkit.release.render import COMPOSE_FILE, Release
from sparkkit.inventory.secrets import Secrets

Printer = Callable[[str], None]
POLL_S = 0.5  # the longest pause between two looks at a starting wave
POLL_FIRST_S = 0.1  # the first pause; each next one is 1.5x longer, up to POLL_S
HEARTBEAT_S = 10.0
LOG_TAIL = 30


@dataclass(frozen=True, kw_only=True)
class Outcome:
    action: str
    release: str | None
    changed: bool
    message: str
    previous: str | None = None  # the release that was current before


class LockHeld(OperationError):
    pass


class DeployFailed(OperationError):
    def __init__(self, message: str, *, service: str | None = None, restored: str | None = None):
        self.service = service
        self.restored = restored
        super().__init__(message)


class RestoreFailed(DeployFailed, NeedsAttention):
    """The release failed and putting the previous one back failed too."""


class RollbackFailed(NeedsAttention):
    """A rollback started and did not finish; the message says what is running now."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_holder(holder: dict, me: str) -> bool:
    """A lock left by a kit on this machine whose process is gone (so it can be taken over safely)."""
    pid = holder.get("pid")
    return holder.get("who") == me and isinstance(pid, int) and pid > 0 and not pid_alive(pid)


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def chain(*argvs: list[str]) -> list[str]:
    """Several commands in one round trip, each quoted as an argv."""
    return ["sh", "-c", " && ".join(shlex.join(a) for a in argvs)]


def specs_of(release: Release, cfg: HostConfig) -> list[ServiceSpec]:
    return [ServiceSpec.from_manifest(item) for item in json.loads(release.manifest(cfg=cfg).content)["services"]]


def release_archive(release: Release, cfg: HostConfig) -> bytes:
    """The release as one base64 tar.gz (secret files keep mode 0600)."""
    buf = io.BytesIO()
    mtime = time.time()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in (*release.files, release.manifest(cfg=cfg)):
            info = tarfile.TarInfo(f.path)
            info.size = len(f.content)
            info.mode = f.mode
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(f.content))
    return base64.b64encode(buf.getvalue())


class HostOps:
    """Operations on one host: one executor (one SSH connection), one config, one printer."""

    def __init__(self, ex: Executor, cfg: HostConfig, *, out: Printer, secrets: Secrets | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.ex = ex
        self.cfg = cfg
        self.out = out
        self.secrets = secrets or Secrets({})
        self.sleep = sleep
        self.startup_s: dict[str, float] = {}  # service -> seconds from `up` to ready, this run
        self.stages: dict[str, dict] = {}  # stage -> {"seconds", "round_trips"}, summed over this run
        self.ids_before: dict[str, str] = {}  # service -> container id before this run
        self._seen: dict = {}  # service -> Container, as the last look during activation saw it
        self._lock_depth = 0
        self.current_stage = "start"

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

    # -- facts -------------------------------------------------------------------------------
    def facts(self, images: list[str] = ()) -> HostFacts:
        result = self.ex.run(cmd.preflight(self.cfg.root, self.cfg.project, list(images), runtimes=self.cfg.gpu),
                             timeout_s=60)
        return parse_preflight(result.stdout)

    def containers(self):
        return parse_containers(self.ex.run(cmd.containers(self.cfg.project), timeout_s=60).stdout)

    def compose_file(self, release_id: str) -> str:
        return f"{self.cfg.root}/releases/{release_id}/{COMPOSE_FILE}"

    def manifest_specs(self, release_id: str) -> list[ServiceSpec]:
        result = self.ex.run(cmd.read_manifest(self.cfg.root, release_id), check=False)
        if result.rc != 0:
            raise OperationError(f"{self.cfg.name}: release {release_id} is missing or damaged "
                                 f"(no {self.cfg.root}/releases/{release_id}/release.json)")
        try:
            return [ServiceSpec.from_manifest(item) for item in json.loads(result.stdout)["services"]]
        except (ValueError, KeyError, TypeError):
            raise OperationError(f"{self.cfg.name}: release {release_id} has a damaged release.json") from None

    # -- lock and audit ----------------------------------------------------------------------
    @contextmanager
    def locked(self, action: str, release: str | None, *, break_lock: bool):
        """Hold the host's lock; reentrant, so deploy-and-verify can hold it across deploy,
        verification and rollback while each of those takes it too."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        token = uuid.uuid4().hex
        info = json.dumps({"who": who(), "pid": os.getpid(), "since": now_iso(), "action": action,
                           "release": release, "token": token})
        with self.stage("lock"):
            result = self.ex.run(cmd.acquire_lock(self.cfg.root, info, break_lock=break_lock))
            acquired, holder = parse_lock(result.stdout)
            if not acquired and stale_holder(holder, who()) and isinstance(holder.get("token"), str):
                self.out(f"{self.cfg.name}: the lock was left by a run that died (pid {holder['pid']} on this "
                         f"machine, {holder.get('action', '?')} since {holder.get('since', '?')}); taking it over")
                result = self.ex.run(cmd.acquire_lock(self.cfg.root, info, break_lock=False,
                                                      stale_token=holder["token"]))
                acquired, holder = parse_lock(result.stdout)
        if not acquired:
            raise LockHeld(
                f"{self.cfg.name}: locked by {holder.get('who', '?')} since {holder.get('since', '?')} "
                f"({holder.get('action', '?')} {holder.get('release') or ''}). If that run is dead, "
                f"rerun with --break-lock")
        if break_lock:
            self.out(f"{self.cfg.name}: lock broken and taken over (--break-lock)")
        self._lock_depth = 1
        try:
            yield
        finally:
            self._lock_depth = 0
            try:
                with self.stage("lock"):
                    self.ex.run(cmd.release_lock(self.cfg.root, token), check=False)
            except OperationError as exc:
                self.out(f"{self.cfg.name}: WARNING: could not release the lock ({exc}); "
                         f"the next run needs --break-lock")

    def audit_argv(self, action: str, release: str | None, result: str, **extra) -> list[str]:
        line = json.dumps({"ts": now_iso(), "who": who(), "host": self.cfg.name, "action": action,
                           "release": release, "result": result, **extra}, sort_keys=True)
        return cmd.append_audit(self.cfg.root, self.secrets.mask(line))

    def audit(self, action: str, release: str | None, result: str, **extra) -> None:
        self.ex.run(self.audit_argv(action, release, result, **extra))

    # -- activation (deploy and rollback share it) -------------------------------------------
    def activate(self, release_id: str, specs: list[ServiceSpec]) -> tuple[bool, str | None, str]:
        """Bring the project to ``release_id``, wave by wave; (ok, failed service, why).

        The first wave always goes through `compose up` (it also removes orphans); meanwhile the
        same round trip learns compose's config hash of every service and the images' ids, so a
        later wave whose services would not change (``plan.services_to_start``) is skipped: no
        `compose up`, no wait."""
        compose_file = self.compose_file(release_id)
        hashes: dict[str, str] | None = None
        image_ids: dict[str, str] = {}
        self._seen = {}
        for i, wave in enumerate(start_waves(specs)):
            wave_specs = [s for s in specs if s.name in wave]
            names = wave
            if hashes is not None:
                names = services_to_start(wave_specs, self._seen, hashes=hashes, image_ids=image_ids)
                if not names:
                    self.out(f"  unchanged and ready: {', '.join(wave)}")
                    continue
            self.out(f"  starting {', '.join(names)}")
            try:
                with self.stage("compose up"):
                    if hashes is None:
                        result = self.ex.run(cmd.compose_up_hashed(
                            self.cfg.project, compose_file, names, remove_orphans=(i == 0),
                            images=sorted({s.image for s in specs})), timeout_s=900, pty=True)
                        hashes, image_ids = parse_hashed_up(result.stdout)
                    else:
                        self.ex.run(cmd.compose_up(self.cfg.project, compose_file, names, remove_orphans=False),
                                    timeout_s=900, pty=True)
            except OperationError as exc:
                return False, names[0] if len(names) == 1 else None, f"docker compose up failed: {exc}"
            with self.stage("health wait"):
                failed = self.wait_ready(wave_specs)
            if failed:
                return False, failed[0], failed[1]
        return True, None, ""

    def wait_ready(self, specs: list[ServiceSpec]) -> tuple[str, str] | None:
        start = time.monotonic()
        restarts: dict[str, tuple[str, int]] = {}
        shown: dict[str, str] = {}
        last_beat = start
        pause = POLL_FIRST_S
        while True:
            elapsed = time.monotonic() - start
            by_service = {c.service: c for c in self.containers()}
            self._seen = by_service
            states = []
            for spec in specs:
                c = by_service.get(spec.name)
                if c is not None and (spec.name not in restarts or restarts[spec.name][0] != c.id):
                    restarts[spec.name] = (c.id, c.restarts)
                states.append(judge_start(spec, c, elapsed_s=elapsed,
                                          restarts_at_start=restarts.get(spec.name, (None, None))[1]))
            beat = time.monotonic() - last_beat >= HEARTBEAT_S
            for st in states:
                if st.state == "ready" and st.service not in self.startup_s:
                    self.startup_s[st.service] = elapsed
                phase = st.state if st.state != "waiting" else st.detail.split(" ")[0]
                if shown.get(st.service) != phase or (beat and st.state == "waiting"):
                    self.out(f"    {st.service:<16} {st.state:<8} {st.detail}")
                    shown[st.service] = phase
            if beat:
                last_beat = time.monotonic()
            failed = [st for st in states if st.state == "failed"]
            if failed:
                return failed[0].service, failed[0].detail
            if all(st.state == "ready" for st in states):
                return None
            self.sleep(pause)
            pause = min(POLL_S, pause * 1.5)

    def last_logs(self, release_id: str, service: str) -> str:
        result = self.ex.run(cmd.compose_logs(self.cfg.project, self.compose_file(release_id), service,
                                              tail=LOG_TAIL), check=False, timeout_s=60)
        return self.secrets.mask((result.stdout + result.stderr).rstrip())

    # -- commands ----------------------------------------------------------------------------
    def deploy(self, release: Release, *, break_lock: bool = False) -> Outcome:
        cfg = self.cfg
        specs = specs_of(release, cfg)
        images = sorted({s.image for s in specs})
        archive = release_archive(release, cfg)
        with self.stage("preflight"):
            facts = self.facts(images)
        self.ids_before = {c.service: c.id for c in facts.containers}
        problems = preflight_problems(facts=facts, specs=specs, gpu=cfg.gpu, project=cfg.project,
                                      release_bytes=len(archive))
        self.out(f"{cfg.name}: Docker {facts.docker_version or '?'}, Compose {facts.compose_version or '?'}; "
                 f"current release {facts.current_release or 'none'}; deploying {release.id}")
        if problems:
            raise OperationError(f"{cfg.name}: preflight failed, nothing was changed:\n  - " + "\n  - ".join(problems))
        if is_noop(facts, release.id, specs):
            with self.stage("audit"):
                self.audit("deploy", release.id, "noop")
            return Outcome(action="deploy", release=release.id, changed=False, previous=release.id,
                           message=f"{cfg.name}: release {release.id} is already current and healthy; nothing restarted")
        previous = facts.current_release

        def install_and_start() -> tuple[bool, str | None, str]:
            if release.id not in facts.releases:
                self.out(f"  uploading release {release.id} ({len(archive) // 1024 + 1} KiB)")
                with self.stage("upload"):
                    self.ex.run(cmd.install_release(cfg.root, release.id), stdin=archive, timeout_s=300)
            with self.stage("pull"):
                self.ensure_images("deploy", release.id, sorted(facts.images_missing))
            ok, service, why = self.activate(release.id, specs)
            if ok:
                keep = prune_candidates(list(facts.releases), cfg.keep_releases,
                                        {release.id} | ({previous} if previous else set()))
                with self.stage("switch"):
                    self.ex.run(chain(cmd.switch_current(cfg.root, release.id),
                                      self.audit_argv("deploy", release.id, "ok", previous=previous),
                                      cmd.prune_releases(cfg.root, keep)))
            return ok, service, why

        with self.locked("deploy", release.id, break_lock=break_lock):
            ok, service, why = self.guarded("deploy", release.id, previous, install_and_start)
            if ok:
                was = "restarted" if previous == release.id else f"previous: {previous or 'none'}"
                return Outcome(action="deploy", release=release.id, changed=True, previous=previous,
                               message=f"{cfg.name}: release {release.id} is live ({was})")
            return self._fail_and_restore("deploy", release.id, previous, service, why)

    def guarded(self, action: str, release_id: str, previous: str | None,
                steps: Callable[[], tuple[bool, str | None, str]]) -> tuple[bool, str | None, str]:
        """Run the steps that change the host. A dropped connection becomes a failure to restore from
        (the next command reconnects); Ctrl-C stops, records it and says what the host looks like."""
        try:
            return steps()
        except ConnectionLost as exc:
            self.out(f"{self.cfg.name}: {exc}\n  reconnecting to put the host right")
            return False, None, f"the SSH connection dropped during {self.current_stage}"
        except KeyboardInterrupt:
            raise self._interrupted(action, release_id, previous) from None

    def _interrupted(self, action: str, release_id: str, previous: str | None) -> Interrupted:
        stage = self.current_stage
        self.out(f"{self.cfg.name}: interrupted (Ctrl-C) during {stage}; recording it and releasing the lock")
        try:
            self.audit(action, release_id, "interrupted", stage=stage, previous=previous)
            current = self.facts().current_release
        except OperationError as exc:
            return Interrupted(f"{self.cfg.name}: {action} of {release_id} interrupted during {stage}; could not "
                               f"read the host afterwards ({exc}). Run `sparkkit status {self.cfg.name}`.")
        if current == release_id and previous != release_id:
            state = f"release {release_id} is current (the switch had happened)"
        else:
            state = (f"current release is still {current or 'none'}; services may be part-way to {release_id}. "
                     f"Rerun the {action} to finish it")
            if current:
                state += f", or `sparkkit rollback {self.cfg.name} --to {current}` to put the current one back"
        return Interrupted(f"{self.cfg.name}: {action} of {release_id} interrupted during {stage}: {state}.")

    def ensure_images(self, action: str, release_id: str, images: list[str]) -> None:
        """Pull what is missing while the running stack keeps serving; fail before touching it."""
        if not images:
            return
        self.out(f"  checking images, pulling any missing: {', '.join(images)} (the running stack keeps serving)")
        pulled = self.ex.run(cmd.ensure_images(images), check=False, timeout_s=3600, pty=True)
        if pulled.rc != 0:
            self.audit(action, release_id, "failed", reason="image pull")
            raise OperationError(
                f"{self.cfg.name}: image(s) {', '.join(images)} neither present nor pullable; nothing "
                f"running was changed\n  {pulled.stderr.strip()[-300:]}")

    def _fail_and_restore(self, action: str, release_id: str, previous: str | None,
                          service: str | None, why: str) -> Outcome:
        cfg = self.cfg
        logs = self.last_logs(release_id, service) if service else ""
        self.out(f"{cfg.name}: {action} of {release_id} failed: {service or 'compose'}: {why}")
        restored = None
        if previous and previous != release_id:
            self.out(f"  restoring previous release {previous}")
            try:
                ok, bad, bad_why = self.activate(previous, self.manifest_specs(previous))
                if ok:  # current may have been switched when the connection dropped
                    self.ex.run(cmd.switch_current(cfg.root, previous))
            except OperationError as exc:
                ok, bad, bad_why = False, None, str(exc)
            if not ok:
                try:
                    self.audit(action, release_id, "failed", service=service, restore=previous,
                               restore_result="failed")
                except OperationError:
                    pass
                raise RestoreFailed(
                    f"{cfg.name}: {action} of {release_id} failed ({service or 'compose'}: {why}) AND restoring "
                    f"{previous} failed ({bad or 'compose'}: {bad_why}). The host needs attention: see "
                    f"`sparkkit status {cfg.name}`.", service=service)
            restored = previous
        elif previous is None:
            self.out("  no previous release: stopping the new one, the host is left as it was")
            self.ex.run(cmd.compose_down(cfg.project, self.compose_file(release_id)), check=False, timeout_s=300)
        self.audit(action, release_id, "failed", service=service, reason=why, restored=restored)
        if restored:
            state = f"restored previous release {restored}, healthy"
        elif previous is None:
            state = "stack stopped; no previous release"
        else:
            state = f"release {release_id} was already current and stays in place; fix the service and redeploy"
        msg = f"{cfg.name}: {action} of {release_id} failed: service {service or '?'}: {why}\n  {state}"
        if logs:
            msg += f"\n  last log lines of {service}:\n" + "\n".join("    " + line for line in logs.splitlines())
        raise DeployFailed(msg, service=service, restored=restored)

    def rollback(self, to: str | None = None, *, break_lock: bool = False) -> Outcome:
        cfg = self.cfg
        facts = self.facts()
        current = facts.current_release
        if to is None:
            to = rollback_target(facts.activations, current, facts.releases)
            if to is None:
                raise OperationError(f"{cfg.name}: no earlier live release to roll back to "
                                     f"(kept: {', '.join(facts.releases) or 'none'})")
        elif to not in facts.releases:
            raise OperationError(f"{cfg.name}: release {to!r} is not kept on the host "
                                 f"(kept: {', '.join(facts.releases) or 'none'})")
        specs = self.manifest_specs(to)

        def start() -> tuple[bool, str | None, str]:
            self.ensure_images("rollback", to, sorted({s.image for s in specs}))
            ok, service, why = self.activate(to, specs)
            if ok:
                with self.stage("switch"):
                    self.ex.run(chain(cmd.switch_current(cfg.root, to),
                                      self.audit_argv("rollback", to, "ok", previous=current)))
            return ok, service, why

        with self.locked("rollback", to, break_lock=break_lock):
            self.out(f"{cfg.name}: rolling back from {current or 'none'} to {to}")
            ok, service, why = self.guarded("rollback", to, current, start)
            if ok:
                return Outcome(action="rollback", release=to, changed=True,
                               message=f"{cfg.name}: release {to} is live (rolled back from {current or 'none'})")
            try:
                self._fail_and_restore("rollback", to, current, service, why)
            except DeployFailed as exc:
                raise RollbackFailed(f"ROLLBACK FAILED: {exc}") from None
            raise AssertionError("_fail_and_restore always raises")

    def down(self, *, break_lock: bool = False) -> Outcome:
        cfg = self.cfg
        facts = self.facts()
        current = facts.current_release
        with self.locked("down", current, break_lock=break_lock):
            if current:
                self.ex.run(cmd.compose_down(cfg.project, self.compose_file(current)), timeout_s=300)
            else:
                self.ex.run(cmd.stop_project(cfg.project), timeout_s=300)
            self.audit("down", current, "ok")
        return Outcome(action="down", release=current, changed=True,
                       message=f"{cfg.name}: stack stopped; releases kept (current: {current or 'none'})")

    def status(self) -> dict:
        facts = self.facts()
        now = datetime.now(timezone.utc)
        expected = [s.name for s in self.manifest_specs(facts.current_release)] if facts.current_release else []
        rows = []
        by_service = {c.service: c for c in facts.containers}
        for name in sorted(set(expected) | set(by_service)):
            c = by_service.get(name)
            rows.append({
                "service": name,
                "state": c.status if c else "missing",
                "health": (c.health or "-") if c else "-",
                "restarts": c.restarts if c else None,
                "uptime_s": int((now - c.started_at).total_seconds()) if c and c.started_at and c.status == "running" else None,
                "image": c.image if c else None,
                "in_release": name in expected,
            })
        return {"host": self.cfg.name, "current_release": facts.current_release,
                "releases": list(facts.releases), "docker": facts.docker_version,
                "compose": facts.compose_version, "services": rows}
