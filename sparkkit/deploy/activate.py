"""Bring a release's services up on a host, wave by wave, and wait until each wave is healthy.
Deploy and rollback share it (a rollback is an activation aimed at a kept release)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sparkkit.deploy.plan import ServiceSpec, judge_start, services_to_start, start_waves
from sparkkit.deploy.session import HostSession, Refused, brief
from sparkkit.errors import OperationError
from sparkkit.host import commands as cmd
from sparkkit.host.facts import parse_hashed_up

POLL_S = 0.5  # the longest pause between two looks at a starting wave
POLL_FIRST_S = 0.1  # the first pause; each next one is 1.5x longer, up to POLL_S
HEARTBEAT_S = 10.0
LOG_TAIL = 30


@dataclass(frozen=True, kw_only=True)
class Failure:
    """Why bringing a release up stopped: the service that failed (None: compose itself, or the
    connection), and what was seen."""

    service: str | None
    why: str
    interrupted: bool = False  # Ctrl-C


class Activation:
    def __init__(self, session: HostSession):
        self.s = session
        self.seen: dict = {}  # service -> Container, as the last look during activation saw it
        self.started: list[str] = []  # services this activation sent `compose up` for

    def activate(self, release_id: str, specs: list[ServiceSpec]) -> Failure | None:
        """Bring the project to ``release_id``, wave by wave; None once every wave is healthy.

        The first wave always goes through `compose up` (it also removes orphans); meanwhile the
        same round trip learns compose's config hash of every service and the images' ids, so a
        later wave whose services would not change (``plan.services_to_start``) is skipped: no
        `compose up`, no wait."""
        s = self.s
        compose_file = s.compose_file(release_id)
        hashes: dict[str, str] | None = None
        image_ids: dict[str, str] = {}
        self.seen = {}
        self.started = []
        for i, wave in enumerate(start_waves(specs)):
            wave_specs = [spec for spec in specs if spec.name in wave]
            names = wave
            if hashes is not None:
                names = services_to_start(wave_specs, self.seen, hashes=hashes, image_ids=image_ids)
                if not names:
                    s.out(f"  unchanged and ready: {', '.join(wave)}")
                    continue
            s.out(f"  starting {', '.join(names)}")
            s.changed_running = True  # from here on a failure must put back what ran before
            self.started.extend(names)
            try:
                with s.stage("compose up"):
                    if hashes is None:
                        result = s.ex.run(cmd.compose_up_hashed(
                            s.cfg.project, compose_file, names, remove_orphans=(i == 0),
                            images=sorted({spec.image for spec in specs})), timeout_s=900, pty=True)
                        hashes, image_ids = parse_hashed_up(result.stdout)
                    else:
                        s.ex.run(cmd.compose_up(s.cfg.project, compose_file, names, remove_orphans=False),
                                 timeout_s=900, pty=True)
            except OperationError as exc:
                return Failure(service=names[0] if len(names) == 1 else None,
                               why=f"docker compose up failed: {s.secrets.mask(brief(exc))}")
            with s.stage("health wait"):
                failed = self.wait_ready(wave_specs)
            if failed:
                return failed
        self.record(release_id, specs)
        return None

    def record(self, release_id: str, specs: list[ServiceSpec]) -> None:
        """Once every wave is ready: write down (``releases/<id>/live.txt``) the config hash each
        service's container carries and its image tag, which is what the release says it runs from
        now on (``drift.drift`` compares with it). Every container was created by `compose up` of this
        release's file or found to carry the very hash compose gives it there, so the labels are
        compose's own hashes; `docker compose config --hash` is not (it differs for a service with an
        env_file). A record that cannot be written fails nothing: drift then shows as unknown."""
        s = self.s
        rows = [(spec.name, self.seen[spec.name].config_hash, spec.image) for spec in specs
                if spec.name in self.seen and self.seen[spec.name].config_hash]
        with s.stage("record"):
            done = s.ex.run(cmd.record_live(s.cfg.root, release_id, rows), check=False)
        if done.rc != 0:
            s.out(f"  could not record what release {release_id} runs (drift will show as unknown): "
                  f"{(done.stderr or done.stdout).strip()[-200:]}")

    def wait_ready(self, specs: list[ServiceSpec]) -> Failure | None:
        s = self.s
        start = time.monotonic()
        restarts: dict[str, tuple[str, int]] = {}
        shown: dict[str, str] = {}
        last_beat = start
        pause = POLL_FIRST_S
        while True:
            elapsed = time.monotonic() - start
            by_service = {c.service: c for c in s.containers()}
            self.seen = by_service
            states = []
            for spec in specs:
                c = by_service.get(spec.name)
                if c is not None and (spec.name not in restarts or restarts[spec.name][0] != c.id):
                    restarts[spec.name] = (c.id, c.restarts)
                states.append(judge_start(spec, c, elapsed_s=elapsed,
                                          restarts_at_start=restarts.get(spec.name, (None, None))[1]))
            beat = time.monotonic() - last_beat >= HEARTBEAT_S
            for st in states:
                if st.state == "ready" and st.service not in s.startup_s:
                    s.startup_s[st.service] = elapsed
                phase = st.state if st.state != "waiting" else st.detail.split(" ")[0]
                if shown.get(st.service) != phase or (beat and st.state == "waiting"):
                    s.out(f"    {st.service:<16} {st.state:<8} {st.detail}")
                    shown[st.service] = phase
            if beat:
                last_beat = time.monotonic()
            failed = [st for st in states if st.state == "failed"]
            if failed:
                return Failure(service=failed[0].service, why=failed[0].detail)
            if all(st.state == "ready" for st in states):
                return None
            s.sleep(pause)
            pause = min(POLL_S, pause * 1.5)

    def last_logs(self, release_id: str, service: str) -> str:
        s = self.s
        result = s.ex.run(cmd.compose_logs(s.cfg.project, s.compose_file(release_id), service,
                                           tail=LOG_TAIL), check=False, timeout_s=60)
        return s.secrets.mask((result.stdout + result.stderr).rstrip())

    def ensure_images(self, action: str, release_id: str, images: list[str]) -> None:
        """Pull what is missing while the running stack keeps serving; Refused before touching it."""
        s = self.s
        if not images:
            return
        s.out(f"  checking images, pulling any missing: {', '.join(images)} (the running stack keeps serving)")
        pulled = s.ex.run(cmd.ensure_images(images), check=False, timeout_s=3600, pty=True)
        if pulled.rc != 0:
            s.audit(action, release_id, "failed", reason="image pull")
            raise Refused(
                f"{s.cfg.name}: image(s) {', '.join(images)} neither present nor pullable; nothing "
                f"running was changed\n  {pulled.stderr.strip()[-300:]}")
