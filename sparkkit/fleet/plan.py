"""Pure decisions for a fleet run: which hosts HOST names, in which batches, what became of each
host, when a rolling run stops, which hosts of a two-host placement must be rolled back, the
overall verdict and the exit code.

No I/O here; ``fleet.run`` acts on these decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sparkkit.deploy.outcome import EXIT_ATTENTION, EXIT_FAILED, EXIT_OK, Verdict
from sparkkit.errors import InputError


class HostStatus(StrEnum):
    """What became of one host in a fleet run (the values appear in summary.json and summary.md)."""

    PASSED = "passed"  # deployed (or already current), every gate passed, kept
    FAILED = "failed"  # gates failed: rolled back (or a first deploy stopped)
    DEPLOY_FAILED = "deploy-failed"  # the deploy itself failed (previous release restored) or was refused
    UNREACHABLE = "unreachable"  # no SSH connection could be opened: nothing on it was touched
    LOST = "lost"  # the connection dropped mid-run: its state is unknown
    LOCKED = "locked"  # another run holds the host's lock: nothing was touched
    PARTNER_FAILED = "partner-failed"  # passed, but a host it shares a placement with failed: rolled back
    SKIPPED = "skipped"  # not started: the rolling run stopped before its batch


_NOT_DEPLOYED = {Verdict.LOCKED: HostStatus.LOCKED, Verdict.UNREACHABLE: HostStatus.UNREACHABLE,
                 Verdict.LOST: HostStatus.LOST}


def host_status(verdict: Verdict, *, dropped: bool) -> HostStatus:
    """A host's deploy-and-verify verdict as a fleet status. ``dropped``: its connection dropped
    during the run; a restore or rollback that then failed means the host was lost."""
    if dropped and verdict in (Verdict.RESTORE_FAILED, Verdict.ROLLBACK_FAILED):
        return HostStatus.LOST
    if verdict in (Verdict.KEPT, Verdict.VERIFIED):
        return HostStatus.PASSED
    if verdict in _NOT_DEPLOYED:
        return _NOT_DEPLOYED[verdict]
    return HostStatus.DEPLOY_FAILED if verdict.before_verification else HostStatus.FAILED


def cut_off_verdict(*, unreachable: bool, ever_connected: bool) -> Verdict:
    """The connection failed (``unreachable``: opening one failed; else it dropped): a host never
    reached was not touched; one reached and then lost is in a state nobody knows."""
    return Verdict.UNREACHABLE if unreachable and not ever_connected else Verdict.LOST


def partner_decision(verdict: Verdict, *, partner: str, previous: str | None, failure: str) -> str:
    """The decision line of a host undone because its placement partner failed."""
    match verdict:
        case Verdict.ROLLED_BACK:
            return f"rolled back to {previous}: placement partner {partner} failed"
        case Verdict.FIRST_DEPLOY_STOPPED:
            return f"stopped (first deploy): placement partner {partner} failed"
        case Verdict.NOT_ROLLED_BACK:
            return f"kept (was already current before this run); placement partner {partner} failed"
    return f"ROLLBACK FAILED after placement partner {partner} failed: {failure}"


def resolve_hosts(spec: str, *, hosts: list[str], groups: dict[str, list[str]]) -> tuple[str, ...]:
    """``spec`` is a host, a group, or a comma-separated list of both. Returns the hosts in the
    order named (a group's hosts in inventory order), each once. Unknown names: InputError."""
    names = [part.strip() for part in spec.split(",")]
    if not spec.strip() or any(not n for n in names):
        raise InputError(f"HOST {spec!r}: expected a host, a group, or a comma-separated list of them")
    out: list[str] = []
    unknown = []
    for name in names:
        if name in groups and name not in hosts:
            members = groups[name]
            if not members:
                raise InputError(f"group {name!r} has no hosts", source="inventory/hosts.yml")
        elif name in hosts:
            members = [name]
        else:
            unknown.append(name)
            continue
        out += [h for h in members if h not in out]
    if unknown:
        raise InputError(
            f"unknown host or group {', '.join(repr(u) for u in unknown)} (hosts: {', '.join(hosts) or 'none'}; "
            f"groups: {', '.join(sorted(groups)) or 'none'})", source="inventory/hosts.yml")
    return tuple(out)


def names_a_fleet(spec: str, *, hosts: list[str]) -> bool:
    """True unless ``spec`` is exactly one host name (then the single-host path runs)."""
    return spec.strip() not in hosts


def batches(hosts: tuple[str, ...], serial: int | None,
            together: list[tuple[str, ...]] = ()) -> list[tuple[str, ...]]:
    """All hosts at once (``serial`` None), or ``serial`` hosts at a time in the given order.
    Hosts that share a placement (``together``) always go in the same batch, which may then hold
    more than ``serial`` hosts."""
    if serial is not None and serial < 1:
        raise InputError(f"--serial must be at least 1, got {serial}")
    units: list[tuple[str, ...]] = []
    placed: set[str] = set()
    for host in hosts:
        if host in placed:
            continue
        unit = next((tuple(h for h in hosts if h in group) for group in together if host in group), (host,))
        placed.update(unit)
        units.append(unit)
    if serial is None:
        return [tuple(hosts)] if hosts else []
    out: list[tuple[str, ...]] = []
    current: list[str] = []
    for unit in units:
        if current and len(current) + len(unit) > serial:
            out.append(tuple(current))
            current = []
        current += unit
    if current:
        out.append(tuple(current))
    return out


def is_failure(status: HostStatus) -> bool:
    return status not in (HostStatus.PASSED, HostStatus.SKIPPED)


def failed_percent(statuses: dict[str, HostStatus], total: int) -> float:
    return 100.0 * sum(is_failure(s) for s in statuses.values()) / total if total else 0.0


def stop_reason(statuses: dict[str, HostStatus], *, total: int, max_fail_percent: float | None) -> str | None:
    """After a batch of a rolling run: why the run must stop now, or None to go on. Without
    ``max_fail_percent`` the first failed host stops it; with it, failures up to that share of the
    whole fleet are tolerated."""
    failed = sorted(h for h, s in statuses.items() if is_failure(s))
    if not failed:
        return None
    if max_fail_percent is None:
        return f"host {failed[0]} {statuses[failed[0]]}"
    pct = failed_percent(statuses, total)
    if pct > max_fail_percent:
        return (f"{len(failed)} of {total} hosts failed ({pct:.0f}%), more than --max-fail-percent "
                f"{max_fail_percent:g}")
    return None


def partners_to_roll_back(statuses: dict[str, HostStatus], together: list[tuple[str, ...]]) -> dict[str, str]:
    """Hosts that passed while a host of their placement did not: host -> the failed partner."""
    out = {}
    for group in together:
        bad = [h for h in group if is_failure(statuses.get(h, HostStatus.SKIPPED))]
        if bad:
            for h in group:
                if statuses.get(h) == HostStatus.PASSED:
                    out[h] = bad[0]
    return out


@dataclass(frozen=True, kw_only=True)
class FleetVerdict:
    passed: bool
    counts: dict
    line: str


def fleet_verdict(statuses: dict[str, HostStatus], *, stopped: str | None) -> FleetVerdict:
    counts = {s: sum(1 for v in statuses.values() if v == s) for s in HostStatus}
    counts = {k: v for k, v in counts.items() if v}
    total = len(statuses)
    ok = counts.get(HostStatus.PASSED, 0)
    passed = ok == total and total > 0
    parts = ", ".join(f"{n} {s}" for s, n in counts.items())
    if passed:
        line = f"PASS — {ok}/{total} hosts passed"
    else:
        line = f"FAIL — {ok}/{total} hosts passed ({parts})"
    if stopped:
        line += f"; rolling run stopped: {stopped}"
    return FleetVerdict(passed=passed, counts=counts, line=line)


def fleet_exit_code(verdict: FleetVerdict, attention: list[bool]) -> int:
    """0 when every host passed; as for one host, 3 when some host needs a person (a failed restore
    or rollback, or lost mid-run); else 1."""
    if verdict.passed:
        return EXIT_OK
    return EXIT_ATTENTION if any(attention) else EXIT_FAILED
