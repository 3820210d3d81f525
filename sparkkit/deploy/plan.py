"""Pure decisions for a deploy: start order, preflight verdicts, what to prune, how a start is going,
and how to undo a release that failed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sparkkit.deploy.drift import ServiceDrift, drift, drifted
from sparkkit.host.facts import Container, HostFacts

MIN_COMPOSE = (2, 20)


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """What activating a release needs to know of a service (kept in the release manifest)."""

    name: str
    image: str
    port: int
    depends_on: tuple[str, ...]
    start_timeout_s: int

    @classmethod
    def from_manifest(cls, item: dict) -> "ServiceSpec":
        return cls(name=item["name"], image=item["image"], port=int(item["port"]),
                   depends_on=tuple(item.get("depends_on", ())),
                   start_timeout_s=int(item["start_timeout_s"]))


def start_waves(specs: list[ServiceSpec]) -> list[list[str]]:
    """Group services into waves: each wave only depends on earlier ones (vLLMs one after the other)."""
    remaining = {s.name: set(s.depends_on) & {x.name for x in specs} for s in specs}
    done: set[str] = set()
    waves = []
    while remaining:
        wave = sorted(name for name, deps in remaining.items() if deps <= done)
        if not wave:
            raise ValueError(f"dependency cycle among {sorted(remaining)}")
        waves.append(wave)
        done.update(wave)
        for name in wave:
            del remaining[name]
    return waves


def services_to_start(specs: list[ServiceSpec], containers: dict[str, Container], *,
                      hashes: dict[str, str], image_ids: dict[str, str]) -> list[str]:
    """The services (of one wave) that `compose up` would create, recreate or start.

    A service is left alone only when its container is ready, carries the very config hash
    compose gives the service in the new file, and was created from the image its tag names on
    the host now. Anything unknown (no hash, no image id) counts as changed, so a missing fact
    costs a `compose up`, never a skipped change."""
    out = []
    for spec in specs:
        c = containers.get(spec.name)
        unchanged = (c is not None and c.ready and bool(c.config_hash) and hashes.get(spec.name) == c.config_hash
                     and bool(c.image_id) and image_ids.get(spec.image) == c.image_id)
        if not unchanged:
            out.append(spec.name)
    return out


def _version_tuple(text: str | None) -> tuple[int, ...]:
    out = []
    for part in (text or "").split("-")[0].split("+")[0].split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def preflight_problems(*, facts: HostFacts, specs: list[ServiceSpec], gpu: bool, project: str,
                       release_bytes: int) -> list[str]:
    """Everything that must be true before a running stack is touched (images are checked after pull)."""
    problems = []
    if facts.docker_version is None:
        problems.append(f"Docker engine not reachable: {facts.docker_error}")
    if facts.compose_version is None:
        problems.append("Docker Compose v2 not found (`docker compose version` failed)")
    elif _version_tuple(facts.compose_version) < MIN_COMPOSE:
        problems.append(f"Docker Compose {facts.compose_version} is too old (need >= "
                        f"{'.'.join(map(str, MIN_COMPOSE))})")
    if gpu and facts.docker_version and "nvidia" not in facts.runtimes:
        problems.append(f"the host has a GPU but Docker has no 'nvidia' runtime (runtimes: "
                        f"{', '.join(facts.runtimes) or 'none'}); install nvidia-container-toolkit")
    needed = max(release_bytes * 4, 16 * 1024 * 1024)
    if facts.free_disk_bytes is not None and facts.free_disk_bytes < needed:
        problems.append(f"not enough free disk for the release: {facts.free_disk_bytes // 1024} KiB free, "
                        f"need {needed // 1024} KiB")
    ours = {p for c in facts.containers for p in c.host_ports}
    for spec in specs:
        if spec.port in facts.listening_ports and spec.port not in ours:
            problems.append(f"host port {spec.port} (service {spec.name}) is taken by a process outside "
                            f"compose project {project!r}")
    return problems


def prune_candidates(releases_newest_first: list[str], keep: int, protect: set[str]) -> list[str]:
    """Releases beyond the newest ``keep``; never the protected ones (current, previous)."""
    kept = 0
    out = []
    for rid in releases_newest_first:
        if rid in protect or kept < keep:
            kept += 1
            continue
        out.append(rid)
    return out


class Recovery(Enum):
    """How to undo a release on a host, from what was current before it."""

    RESTORE_PREVIOUS = "restore the previous release"
    STOP_NEW = "stop the new stack (there was no previous release)"
    LEAVE_IN_PLACE = "leave it (it was already current before)"


def recovery(previous: str | None, release: str) -> Recovery:
    """``previous``: the release that was current before ``release`` was deployed (None: none was)."""
    if previous is None:
        return Recovery.STOP_NEW
    if previous and previous != release:
        return Recovery.RESTORE_PREVIOUS
    return Recovery.LEAVE_IN_PLACE


def rollback_target(activations: tuple[str, ...], current: str | None, kept: tuple[str, ...], *,
                    unrestored: str | None = None) -> str | None:
    """The release that was live before ``current`` and is still kept on the host; or, when the last
    deploy or rollback failed and could not put back the release that ran before it (``unrestored``,
    from the audit log), that release: the host may run part of the failed one, whatever
    ``current`` names."""
    if unrestored and unrestored in kept:
        return unrestored
    for rid in reversed(activations):
        if rid != current and rid in kept:
            return rid
    return None


@dataclass(frozen=True, kw_only=True)
class StartState:
    service: str
    state: str  # "waiting", "ready" or "failed"
    detail: str


def judge_start(spec: ServiceSpec, container: Container | None, *, elapsed_s: float,
                restarts_at_start: int | None) -> StartState:
    """How one service's start is going, from its container's state and the time spent."""
    name = spec.name
    if container is None:
        if elapsed_s > spec.start_timeout_s:
            return StartState(service=name, state="failed", detail=f"no container after {elapsed_s:.0f}s")
        return StartState(service=name, state="waiting", detail="no container yet")
    if container.ready:
        return StartState(service=name, state="ready", detail=container.health or container.status)
    if container.status in ("exited", "dead"):
        why = " (OOM-killed)" if container.oom_killed else ""
        return StartState(service=name, state="failed",
                          detail=f"container {container.status} with exit code {container.exit_code}{why}")
    if container.health == "unhealthy":
        return StartState(service=name, state="failed", detail="healthcheck reports unhealthy")
    if restarts_at_start is not None and container.restarts > restarts_at_start:
        return StartState(service=name, state="failed",
                          detail=f"restarted {container.restarts - restarts_at_start} time(s) while starting "
                                 f"(crash loop; last exit code {container.exit_code})")
    if elapsed_s > spec.start_timeout_s:
        return StartState(service=name, state="failed",
                          detail=f"not healthy after {elapsed_s:.0f}s (start_timeout_s {spec.start_timeout_s})")
    label = container.health or container.status
    return StartState(service=name, state="waiting", detail=f"{label} {elapsed_s:.0f}s/{spec.start_timeout_s}s")


def drift_of(facts: HostFacts, specs: list[ServiceSpec]) -> tuple[ServiceDrift, ...]:
    """Every service of the host next to what ``specs`` (the current release's) say it runs."""
    return drift(facts.containers, images={s.name: s.image for s in specs}, hashes=facts.current_hashes,
                 image_ids=facts.image_ids)


def is_noop(facts: HostFacts, release_id: str, specs: list[ServiceSpec]) -> bool:
    """Same release already current and no drift: every service runs, ready, in one container, the
    config hash and image the release gives it; nothing extra runs (``drift.drift``)."""
    if facts.current_release != release_id:
        return False
    return not drifted(drift_of(facts, specs))
