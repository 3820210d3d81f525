"""Drift, decided in pure code: what every container of the project runs (its Compose config hash,
its image id) against what the current release says (the config hash its service went live with,
recorded in ``releases/<id>/live.txt`` when the release came up; the id the release's image tag
resolves to on the host now).

Any difference is drift: the no-op check (``plan.is_noop``) refuses to call such a host unchanged,
``diff`` and ``status`` show it per service, and the next ``deploy`` repairs it (it starts exactly the
services compose would change, ``plan.services_to_start``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Mapping

from sparkkit.host.facts import Container

SHORT = 12  # hashes and image ids are shown this long


class DriftState(Enum):
    """What one service's containers look like next to the release (the value is what people see)."""

    OK = "ok"
    CONFIG = "config differs"  # its container carries another config hash than the release gives it
    IMAGE = "image differs"  # its container runs another image than the release's tag names now
    MISSING = "missing"  # the release has the service, no container runs it
    EXTRA = "extra"  # a container the release does not have (or a second one for one service)
    NOT_READY = "not ready"  # the right container, but not running or not healthy
    UNKNOWN = "unknown"  # what the release says could not be read (its hash, its image's id)


@dataclass(frozen=True, kw_only=True)
class ServiceDrift:
    """One service: its state, and what runs beside what the release says (config hash or image id)."""

    service: str
    state: DriftState
    running: str = ""
    expected: str = ""

    @property
    def drifted(self) -> bool:
        return self.state is not DriftState.OK

    def line(self, release_id: str | None) -> str:
        """One line for people, e.g. ``vllm-fast runs config abc123, release r1 says def456``."""
        rel = f"release {release_id or 'none'}"
        run, want = self.running[:SHORT] or "?", self.expected[:SHORT] or "?"
        text = {
            DriftState.OK: f"runs what {rel} says",
            DriftState.CONFIG: f"runs config {run}, {rel} says {want}",
            DriftState.IMAGE: f"runs image {_short_id(self.running)}, {rel}'s image {self.expected}",
            DriftState.MISSING: f"has no container, {rel} runs it",
            DriftState.EXTRA: f"runs, but {rel} has {self.expected or 'no such service'}",
            DriftState.NOT_READY: f"runs what {rel} says but is {self.running or 'not ready'}",
            DriftState.UNKNOWN: f"cannot be compared: {self.expected or 'the release could not be read'}",
        }[self.state]
        return f"{self.service} {text}"


def _short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:SHORT] or "?"


def _one(service: str, c: Container, *, image: str, hashes: Mapping[str, str],
         image_ids: Mapping[str, str]) -> ServiceDrift:
    want_hash = hashes.get(service, "")
    if want_hash and c.config_hash and want_hash != c.config_hash:
        return ServiceDrift(service=service, state=DriftState.CONFIG, running=c.config_hash, expected=want_hash)
    want_id = image_ids.get(image, "")
    if want_id and c.image_id and want_id != c.image_id:
        return ServiceDrift(service=service, state=DriftState.IMAGE, running=c.image_id,
                            expected=f"{image} is {_short_id(want_id)}")
    if not c.ready:
        return ServiceDrift(service=service, state=DriftState.NOT_READY,
                            running=" ".join(x for x in (c.status, c.health) if x))
    if not (want_hash and c.config_hash):
        return ServiceDrift(service=service, state=DriftState.UNKNOWN,
                            expected="no config hash recorded when the release went live (a deploy records it)"
                            if not want_hash else "its container carries no config hash")
    if not (want_id and c.image_id):
        return ServiceDrift(service=service, state=DriftState.UNKNOWN,
                            expected=f"image {image} is not on the host" if not want_id
                            else "its container's image id is unknown")
    return ServiceDrift(service=service, state=DriftState.OK, running=c.config_hash, expected=want_hash)


def drift(containers: Iterable[Container], *, images: Mapping[str, str], hashes: Mapping[str, str],
          image_ids: Mapping[str, str]) -> tuple[ServiceDrift, ...]:
    """Every service of the release (``images``: service -> image tag) and every container, by service.

    ``hashes``: service -> the config hash it went live with (``live.txt``); ``image_ids``:
    image tag -> the id it resolves to on the host now. A service is OK only when its one container
    is ready and both are known and equal; a missing fact is UNKNOWN (drift: a deploy looks again),
    never OK."""
    by_service: dict[str, list[Container]] = {}
    for c in containers:
        by_service.setdefault(c.service, []).append(c)
    out = []
    for service in sorted(set(images) | set(by_service)):
        found = by_service.get(service, [])
        if service not in images:
            out.append(ServiceDrift(service=service, state=DriftState.EXTRA, running=found[0].config_hash))
        elif not found:
            out.append(ServiceDrift(service=service, state=DriftState.MISSING, expected=hashes.get(service, "")))
        elif len(found) > 1:
            out.append(ServiceDrift(service=service, state=DriftState.EXTRA,
                                    expected=f"one container for it ({len(found)} run)"))
        else:
            out.append(_one(service, found[0], image=images[service], hashes=hashes, image_ids=image_ids))
    return tuple(out)


def drifted(report: Iterable[ServiceDrift]) -> tuple[ServiceDrift, ...]:
    """The services that are not OK."""
    return tuple(d for d in report if d.drifted)
