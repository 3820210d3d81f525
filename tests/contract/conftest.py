"""The contract tier's fixtures: ``server`` is each of the two servers in turn, the simulator and the
real vLLM (its URL in SPARKKIT_VLLM_URL, set by `make test-vllm`; without it the vLLM half skips,
and fails under CI); ``plain_server`` the same two started with no parser flag
(SPARKKIT_VLLM_PLAIN_URL). Every test here is marked ``vllm_contract``; `make test` never collects them
(tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from tests.contract import servers

KINDS = ("simulator", "vllm")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.vllm_contract)


def _real(variable: str, *, parsers: bool):
    url = os.environ.get(variable)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{variable} is not set: run the contract tier with `make test-vllm`")
        pytest.skip(f"no real vLLM server ({variable}): `make test-vllm` starts one")
    server = servers.Server("vllm", url.rstrip("/"), parsers=parsers)
    yield server
    assert servers.healthy(server.base_url), f"the real vLLM server at {url} is no longer healthy after the tests"


@pytest.fixture(scope="session")
def simulator_server():
    with servers.simulator() as server:
        yield server


@pytest.fixture(scope="session")
def vllm_server():
    yield from _real("SPARKKIT_VLLM_URL", parsers=True)


@pytest.fixture(scope="session")
def simulator_plain_server():
    with servers.simulator(parsers=False) as server:
        yield server


@pytest.fixture(scope="session")
def vllm_plain_server():
    yield from _real("SPARKKIT_VLLM_PLAIN_URL", parsers=False)


@pytest.fixture(params=KINDS)
def server(request) -> servers.Server:
    """Each server started with the parser flags the kit renders."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(params=KINDS)
def plain_server(request) -> servers.Server:
    """Each server started with no parser flag."""
    return request.getfixturevalue(f"{request.param}_plain_server")


def sim_differs(server: servers.Server, request: pytest.FixtureRequest, reason: str) -> None:
    """Mark this test as a known difference of the simulator from vLLM: on the simulator it is an
    xfail with ``strict=True``, so the day the simulator behaves like vLLM the test says so (XPASS
    fails) and the mark must go."""
    if server.is_sim:
        request.applymarker(pytest.mark.xfail(reason=f"simulator differs from vLLM: {reason}", strict=True))
