"""The fault sweep: for every position N of a full run, fail the Nth remote command (a non-zero exit,
an OperationError such as a timeout, a RuntimeError) or drop the connection during it (before it
ran, or after it ran and before its answer came back), on a stateful
model of the host (tests/model_host.py), and check the end state:

- the exit code is one a failure at that position may give (0 only where the fault was absorbed:
  an audit append or unlock retried; 3 only with the host's state stated in the message);
- otherwise the host is consistent: every container was created from the release ``current``
  names and runs the services of that release (no release: no containers);
- the lock is released;
- the attempt left its audit lines: one per action, the first a deploy (or the deploy-and-verify
  that could not take the lock), none written twice.

Runs: a changing deploy, a first deploy, and deploy-and-verify (probe-less: the services' suites are
off, the memory headroom gate decides) with a passing gate, a failing gate, and a first deploy
failing its gate.
"""

from __future__ import annotations

import json

import pytest

from sparkkit.deploy.apply import HostOps
from sparkkit.errors import OperationError
from sparkkit.inventory.build import build_config
from sparkkit.inventory.layers import load_host_layers
from sparkkit.release.render import render_release
from sparkkit.verify.run import deploy_and_verify

from .model_host import ModelHost
from .projects import REPO
from .test_deploy_flow import SECRETS

OLD = "r0ld"
FAULTS = {
    "exit 1": ("fail_at", 1),
    "OperationError": ("fail_at", OperationError("remote command timed out after 60s")),
    "RuntimeError": ("fail_at", RuntimeError("an unexpected bug")),
    "dropped": ("drop_at", None),
    "dropped after it ran": ("drop_after", None),
}


@pytest.fixture(scope="module")
def kit():
    services = [s.name for s in build_config(load_host_layers(REPO, "rehearsal")).services]
    cfg = build_config(load_host_layers(REPO, "rehearsal", [f"services.{n}.probe_suites=[]" for n in services]))
    release = render_release(cfg, SECRETS, REPO, key=bytes.fromhex(ModelHost.release_key))  # keyed as the host keys it
    return cfg, release


def host_with(cfg, release, *, previous: bool, gate_passes: bool = True) -> ModelHost:
    model = ModelHost(root=cfg.root, project=cfg.project)
    if previous:  # OLD is live: kept, current, every service created from it, its "ok" audit line
        model.releases[OLD] = release.manifest(cfg=cfg).content.decode().replace(release.id, OLD)
        model.current = OLD
        for spec in model.services_of(OLD):
            model._up(model._compose_file(OLD), [spec["name"]], remove_orphans=False)
        model.audit.append(json.dumps({"action": "deploy", "release": OLD, "result": "ok"}))
    if not gate_passes:
        model.mem_available_kib = 1024 * 1024  # 1 GiB: the memory headroom gate fails
    return model


def attempt(kind: str, cfg, release, model: ModelHost, faults: dict) -> tuple[int, str, bool]:
    """Run ``kind`` on the model with ``faults``: (exit code, message, raised)."""
    model.drop_after = faults.pop("drop_after", None)
    ex = model.executor(**faults)
    ops = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS, sleep=lambda _: None)
    try:
        if kind == "deploy":
            result = ops.deploy(release)
            return result.exit_code, result.message, False
        run = deploy_and_verify(ops, release, {})
        return run.exit_code, f"{run.decision}\n{run.deploy_error or ''}", False
    except Exception as exc:  # noqa: BLE001 - the CLI maps what escapes to exit 1
        return 1, str(exc), True
    except KeyboardInterrupt:  # ... and Ctrl-C to 130
        return 130, "interrupted (Ctrl-C)", True


def check(model: ModelHost, before: int, code: int, message: str, raised: bool, *, clean: int,
          failed: frozenset[int] = frozenset({1, 3})) -> list[str]:
    """What is wrong with the end state (empty: nothing). ``clean``: the exit code of the run without
    a fault (0 is allowed only then: the fault was absorbed, e.g. an unlock tried again);
    ``failed``: the exit codes a failure may give (Ctrl-C: 130, or 3 when it stopped a rollback)."""
    problems = []
    if model.lock is not None:
        problems.append("the lock was left")
    allowed = set(failed) | ({0} if clean == 0 else set())
    if code not in allowed:
        problems.append(f"exit {code} not in {sorted(allowed)}")
    if code == 3:
        if "containers:" not in message:
            problems.append(f"exit 3 without the host's state: {message[:300]}")
    else:
        running = model.running()
        if model.current is None:
            if running:
                problems.append(f"no release is current but containers run: {running}")
        else:
            want = {s["name"] for s in model.services_of(model.current)}
            if set(running) != want or set(running.values()) != {model.current}:
                problems.append(f"current {model.current} but containers run {running}")
    lines = model.audit_entries()[before:]
    actions = [e["action"] for e in lines]
    if not lines or actions[0] not in ("deploy", "deploy-and-verify"):
        problems.append(f"no audit line for the attempt: {actions}")
    if len(actions) != len(set(actions)):
        problems.append(f"an action audited twice: {actions}")
    if raised and code not in (1, 130):
        problems.append(f"an exception left exit code {code}")
    return problems


RUNS = {
    "deploy (changing)": ("deploy", True, True),
    "deploy (first)": ("deploy", False, True),
    "deploy-and-verify (gate passes)": ("deploy-and-verify", True, True),
    "deploy-and-verify (gate fails)": ("deploy-and-verify", True, False),
    "deploy-and-verify (first, gate fails)": ("deploy-and-verify", False, False),
}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_at_every_position_ends_consistent(kit, run, fault):
    cfg, release = kit
    kind, previous, gate_passes = RUNS[run]
    clean_model = host_with(cfg, release, previous=previous, gate_passes=gate_passes)
    code, message, raised = attempt(kind, cfg, release, clean_model, {})
    assert not raised and not check(clean_model, 1 if previous else 0, code, message, raised, clean=code)
    steps = _count(kind, cfg, release, previous, gate_passes)
    assert steps >= (8 if kind == "deploy" else 17)
    name, value = FAULTS[fault]
    failures = {}
    for n in range(1, steps + 1):
        model = host_with(cfg, release, previous=previous, gate_passes=gate_passes)
        before = len(model.audit)
        faults = {name: n, **({"fail_with": value} if name == "fail_at" else {})}
        code_n, message_n, raised_n = attempt(kind, cfg, release, model, faults)
        problems = check(model, before, code_n, message_n, raised_n, clean=code)
        if problems:
            failures[n] = problems
    assert not failures, failures


def _count(kind, cfg, release, previous, gate_passes) -> int:
    """How many remote commands the clean run sends."""
    model = host_with(cfg, release, previous=previous, gate_passes=gate_passes)
    ex = model.executor()
    ops = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS, sleep=lambda _: None)
    if kind == "deploy":
        ops.deploy(release)
    else:
        deploy_and_verify(ops, release, {})
    return len(ex.ran)


def test_the_clean_runs_end_as_they_should(kit):
    """Without faults: the changing deploy goes live; the failing gate rolls back to OLD; a first
    deploy failing its gate is stopped (no release current, no containers)."""
    cfg, release = kit
    for run, (kind, previous, gate_passes) in RUNS.items():
        model = host_with(cfg, release, previous=previous, gate_passes=gate_passes)
        code, message, raised = attempt(kind, cfg, release, model, {})
        assert not raised, (run, message)
        want = release.id if gate_passes else (OLD if previous else None)
        assert (code, model.current) == ((0 if gate_passes else 1), want), (run, message)
        assert set(model.running().values()) == ({want} if want else set()), run


@pytest.mark.parametrize("run", list(RUNS))
def test_ctrl_c_at_every_position_leaves_a_consistent_audited_host(kit, run):
    """Ctrl-C keeps its own path (exit 130; during verification the release stays live, unverified;
    during deploy-and-verify's rollback, exit 3 with the state said) and leaves the host as a failure
    would: consistent, unlocked, audited."""
    cfg, release = kit
    kind, previous, gate_passes = RUNS[run]
    steps = _count(kind, cfg, release, previous, gate_passes)
    failures = {}
    for n in range(1, steps + 1):
        model = host_with(cfg, release, previous=previous, gate_passes=gate_passes)
        before = len(model.audit)
        code, message, raised = attempt(kind, cfg, release, model, {"fail_at": n, "fail_with": KeyboardInterrupt()})
        problems = check(model, before, code, message, raised, clean=0 if gate_passes else 1,
                         failed=frozenset({130, 3} if kind != "deploy" else {130}))
        if problems:
            failures[n] = problems
    assert not failures, failures


def test_the_sweep_is_as_large_as_the_readme_says(kit):
    """The README states how many fault positions the sweep tries (each command position of each run,
    failed each way and by Ctrl-C); every one of them is asserted consistent by the tests above."""
    cfg, release = kit
    positions = sum(_count(kind, cfg, release, previous, gate_passes)
                    for kind, previous, gate_passes in RUNS.values())
    tried = positions * (len(FAULTS) + 1)
    print(f"\nfault positions tried: {tried} ({positions} commands x {len(FAULTS) + 1} ways)")
    readme = (REPO / "README.md").read_text()
    assert f"{tried}/{tried} fault positions" in readme
