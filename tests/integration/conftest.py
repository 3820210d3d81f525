"""pytest fixtures over the rehearsal testbed (the ``testbed`` package beside tests/: `make testbed`).

Each test module gets its own stack (a project copy with its own sparkkit root, compose project and
host ports), so it never touches a stack a person deployed with `make deploy`. Under pytest-xdist
each worker shifts its host ports by WORKER_PORT_STRIDE, so workers' stacks never share a port.
"""

from __future__ import annotations

import os
import uuid

import pytest

from testbed.stack import PORT_STEP, PORTS, Stack, port_base, testbed_problem

SECRET = "it-secret-" + uuid.uuid4().hex[:16]
# a worker's stacks use port offsets 0-200 (multiples of PORT_STEP); 4 workers stay within 1000 ports
WORKER_PORT_STRIDE = 5 * PORT_STEP
HEALTH_INTERVAL_S = 2  # the `stack` fixture's health checks (the rehearsal host has 1 s)


def _shift_ports_for_this_worker() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ... under pytest-xdist
    if worker.startswith("gw"):
        run_base = os.environ.setdefault("SPARKKIT_IT_RUN_PORT_BASE", str(port_base()))  # idempotent
        os.environ["SPARKKIT_IT_PORT_BASE"] = str(int(run_base) + WORKER_PORT_STRIDE * int(worker[2:]))


_shift_ports_for_this_worker()


def require(problem: str | None) -> None:
    """A missing testbed fails under CI=true and skips (with the reason) elsewhere."""
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"integration testbed missing in CI: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def testbed():
    require(testbed_problem())


@pytest.fixture(scope="module")
def stack(testbed, tmp_path_factory):
    """A stack of the rehearsal host's six services (port offset 0, health checks every
    HEALTH_INTERVAL_S), its searxng secret SECRET."""
    s = Stack(tmp_path_factory.mktemp("stack"))
    # each health check is a docker exec of about 0.1 CPU-second: at the rehearsal host's 1 s, the
    # stacks of four test workers kept a 2-core machine busy with them alone
    for name in PORTS:
        s.set_service(name, healthcheck={"interval_s": HEALTH_INTERVAL_S})
    old = os.environ.get("SPARKKIT_SECRET_SEARXNG_SECRET")
    os.environ["SPARKKIT_SECRET_SEARXNG_SECRET"] = SECRET
    yield s
    s.cleanup()
    if old is None:
        os.environ.pop("SPARKKIT_SECRET_SEARXNG_SECRET", None)
    else:
        os.environ["SPARKKIT_SECRET_SEARXNG_SECRET"] = old
