"""Deploy, roll back, stop, and read the state of a release on one host, through an Executor.

The decisions live in ``plan`` and ``outcome``; this module sequences the steps (``lock``,
``activate``, ``restore``) and reports progress. Rollback is the same code path as deploy
(``Activation.activate``), aimed at a kept release. Each command returns a ``DeployResult``;
errors that leave no decision (a remote command failing outside the guarded steps, a host
that cannot be reached) still raise.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable

from sparkkit.deploy.activate import Activation, Failure
from sparkkit.deploy.lock import HostLock, LockHeld
from sparkkit.deploy.outcome import DeployResult, Outcome
from sparkkit.deploy.drift import drifted
from sparkkit.deploy.plan import (Recovery, ServiceSpec, drift_of, is_noop, preflight_problems, prune_candidates,
                                  rollback_target)
from sparkkit.deploy.restore import guarded, interrupted, recover
from sparkkit.deploy.session import HostSession, Printer, Refused
from sparkkit.host import commands as cmd
from sparkkit.host.commands import chain
from sparkkit.host.executor import Executor
from sparkkit.host.facts import HostFacts, parse_preflight
from sparkkit.inventory.model import HostConfig
from sparkkit.inventory.secrets import Secrets
from sparkkit.release.render import Release


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


class HostOps(HostSession):
    """The commands on one host: one executor (one SSH connection), one config, one printer."""

    def __init__(self, ex: Executor, cfg: HostConfig, *, out: Printer, secrets: Secrets | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(ex, cfg, out=out, secrets=secrets, sleep=sleep)
        self.lock = HostLock(self)
        self.activation = Activation(self)
        self.ids_before: dict[str, str] = {}  # service -> container id before this run

    @contextmanager
    def locked(self, action: str, release: str | None, *, break_lock: bool, facts_for: list[str] | None = None):
        """The host's lock as a context manager (see ``HostLock.held``); raises LockHeld. With
        ``facts_for`` (the images to look at) the preflight facts are read once the lock is ours, in
        the same round trip, and yielded: a command that changes the host decides on facts read
        under its lock."""
        then = self.preflight_argv(facts_for) if facts_for is not None else None
        with self.lock.held(action, release, break_lock=break_lock, then=then) as text:
            yield self.learn(text) if then is not None else None

    def _locked(self, action: str, release_id: str | None, body: Callable[[HostFacts], DeployResult], *,
                break_lock: bool, images: list[str] = ()) -> DeployResult:
        """Take the lock, read the facts in the same round trip, run ``body`` on them."""
        try:
            with self.locked(action, release_id, break_lock=break_lock, facts_for=list(images)) as facts:
                return body(facts)
        except LockHeld as exc:
            return DeployResult(outcome=Outcome.LOCKED, action=action, release=release_id, message=str(exc))

    def deploy(self, release: Release, *, break_lock: bool = False) -> DeployResult:
        images = sorted({s.image for s in specs_of(release, self.cfg)})
        return self._locked("deploy", release.id, lambda facts: self._deploy(release, facts),
                            break_lock=break_lock, images=images)

    def _deploy(self, release: Release, facts: HostFacts) -> DeployResult:
        cfg = self.cfg
        specs = specs_of(release, cfg)
        release = self.final(release)  # its final id: the secrets keyed by the host's key, where it has one
        archive = release_archive(release, cfg)
        self.ids_before = {c.service: c.id for c in facts.containers}
        problems = preflight_problems(facts=facts, specs=specs, gpu=cfg.gpu, project=cfg.project,
                                      release_bytes=len(archive))
        self.out(f"{cfg.name}: Docker {facts.docker_version or '?'}, Compose {facts.compose_version or '?'}; "
                 f"current release {facts.current_release or 'none'}; deploying {release.id}")
        previous = facts.current_release
        if problems:
            self.lock.close_with(self.audit_argv("deploy", release.id, "refused", reason="preflight"))
            return DeployResult(outcome=Outcome.REFUSED, action="deploy", release=release.id, previous=previous,
                                message=f"{cfg.name}: preflight failed, nothing was changed:\n  - "
                                        + "\n  - ".join(problems))
        try:
            self.keyed(release)  # a release with secrets and no key on the host is refused
        except Refused as exc:
            self.lock.close_with(self.audit_argv("deploy", release.id, "refused", reason="release key"))
            return DeployResult(outcome=Outcome.REFUSED, action="deploy", release=release.id, previous=previous,
                                message=f"{exc}; nothing was changed")
        if is_noop(facts, release.id, specs):
            self.lock.close_with(self.audit_argv("deploy", release.id, "noop"))
            return DeployResult(
                outcome=Outcome.UNCHANGED, action="deploy", release=release.id, previous=release.id,
                message=f"{cfg.name}: release {release.id} is already current and healthy; nothing restarted")
        if previous == release.id:  # current, but something runs other than it says: the deploy repairs it
            for d in drifted(drift_of(facts, specs)):
                self.out(f"  drift: {d.line(previous)}")

        def install_and_start() -> Failure | None:
            if release.id not in facts.releases:
                self.out(f"  uploading release {release.id} ({len(archive) // 1024 + 1} KiB)")
                with self.stage("upload"):
                    self.ex.run(cmd.install_release(cfg.root, release.id), stdin=archive, timeout_s=300)
            with self.stage("pull"):
                self.activation.ensure_images("deploy", release.id, sorted(facts.images_missing))
            failed = self.activation.activate(release.id, specs)
            if failed is None:
                keep = prune_candidates(list(facts.releases), cfg.keep_releases,
                                        {release.id} | ({previous} if previous else set()))
                with self.stage("switch"):
                    self.ex.run(chain(cmd.switch_current(cfg.root, release.id), cmd.prune_releases(cfg.root, keep)))
                # written with the unlock, once the switch is known to have happened
                self.lock.close_with(self.audit_argv("deploy", release.id, "ok", previous=previous))
            return failed

        def done() -> DeployResult:
            was = "restarted" if previous == release.id else f"previous: {previous or 'none'}"
            return DeployResult(outcome=Outcome.LIVE, action="deploy", release=release.id, previous=previous,
                                message=f"{cfg.name}: release {release.id} is live ({was})")

        return self._change("deploy", release.id, previous, install_and_start, done)

    def rollback(self, to: str | None = None, *, break_lock: bool = False) -> DeployResult:
        return self._locked("rollback", to, lambda facts: self._rollback(to, facts), break_lock=break_lock)

    def _rollback(self, to: str | None, facts: HostFacts) -> DeployResult:
        cfg = self.cfg
        current = facts.current_release

        def refused(message: str) -> DeployResult:
            self.lock.close_with(self.audit_argv("rollback", to, "refused", previous=current))
            return DeployResult(outcome=Outcome.REFUSED, action="rollback", release=to, previous=current,
                                message=message)

        if to is None:
            to = rollback_target(facts.activations, current, facts.releases, unrestored=facts.unrestored)
            if to is None:
                return refused(f"{cfg.name}: no earlier live release to roll back to "
                               f"(kept: {', '.join(facts.releases) or 'none'})")
        elif to not in facts.releases:
            return refused(f"{cfg.name}: release {to!r} is not kept on the host "
                           f"(kept: {', '.join(facts.releases) or 'none'})")
        try:
            specs = self.manifest_specs(to)
        except Refused as exc:
            return refused(str(exc))

        def start() -> Failure | None:
            self.out(f"{cfg.name}: rolling back from {current or 'none'} to {to}")
            self.activation.ensure_images("rollback", to, sorted({s.image for s in specs}))
            failed = self.activation.activate(to, specs)
            if failed is None:
                with self.stage("switch"):
                    self.ex.run(cmd.switch_current(cfg.root, to))
                self.lock.close_with(self.audit_argv("rollback", to, "ok", previous=current))
            return failed

        def done() -> DeployResult:
            return DeployResult(outcome=Outcome.LIVE, action="rollback", release=to, previous=current,
                                message=f"{cfg.name}: release {to} is live (rolled back from {current or 'none'})")

        return self._change("rollback", to, current, start, done, rolling_back=True)

    def _change(self, action: str, release_id: str, previous: str | None, steps: Callable[[], Failure | None],
                done: Callable[[], DeployResult], *, rolling_back: bool = False) -> DeployResult:
        """Under the lock: run ``steps``; then ``done``, or put the host right after a failure of any
        kind (``restore.guarded``: the one failure path)."""
        try:
            failed = guarded(self, steps)
        except Refused as exc:
            return DeployResult(outcome=Outcome.REFUSED, action=action, release=release_id, previous=previous,
                                message=str(exc))
        if failed is None:
            return done()
        if failed.interrupted:
            return interrupted(self, self.activation, action, release_id, previous)
        return recover(self, self.activation, action, release_id, previous, failed, rolling_back=rolling_back)

    def down(self, *, break_lock: bool = False, clear_current: bool = False) -> DeployResult:
        """Stop the stack (releases kept); ``clear_current``: no release is live afterwards either
        (a first deploy undone). A failing stop writes its audit line and raises."""
        return self._locked("down", None, lambda facts: self._down(facts, clear_current), break_lock=break_lock)

    def _down(self, facts: HostFacts, clear_current: bool) -> DeployResult:
        cfg = self.cfg
        current = facts.current_release
        self.changed_running = True
        if current:
            stop = cmd.compose_down(cfg.project, self.compose_file(current))
        else:
            stop = cmd.stop_project(cfg.project)
        with self.stage("down"):
            self.ex.run(chain(stop, cmd.clear_current(cfg.root)) if clear_current else stop, timeout_s=300)
        self.lock.close_with(self.audit_argv("down", current, "ok"))
        return DeployResult(outcome=Outcome.STOPPED, action="down", release=current, previous=current,
                            message=f"{cfg.name}: stack stopped; releases kept (current: {current or 'none'})")

    def undo(self, step: Recovery, previous: str | None) -> DeployResult | None:
        """Put back what ran before a release that is not kept: roll back to ``previous``, or stop a
        first deploy and clear ``current`` (the host is left as it was); None for LEAVE_IN_PLACE."""
        if step is Recovery.RESTORE_PREVIOUS:
            return self.rollback(previous)
        if step is Recovery.STOP_NEW:
            return self.down(clear_current=True)
        return None

    def status(self) -> dict:
        facts = self.facts()
        now = datetime.now(timezone.utc)
        specs = self.manifest_specs(facts.current_release) if facts.current_release else []
        expected = [s.name for s in specs]
        drift = {d.service: d for d in drift_of(facts, specs)}
        rows = []
        by_service = {c.service: c for c in facts.containers}
        for name in sorted(set(expected) | set(by_service)):
            c = by_service.get(name)
            d = drift[name]
            rows.append({
                "service": name,
                "state": c.status if c else "missing",
                "health": (c.health or "-") if c else "-",
                "restarts": c.restarts if c else None,
                "uptime_s": int((now - c.started_at).total_seconds()) if c and c.started_at and c.status == "running" else None,
                "image": c.image if c else None,
                "in_release": name in expected,
                "drift": d.state.value,  # "ok", or how it differs from the release (deploy/drift.py)
                "drift_detail": d.line(facts.current_release) if d.drifted else None,
            })
        return {"host": self.cfg.name, "current_release": facts.current_release,
                "drifted": sorted(name for name, d in drift.items() if d.drifted),
                "releases": list(facts.releases), "docker": facts.docker_version,
                "compose": facts.compose_version, "services": rows}
