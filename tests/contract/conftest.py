"""The contract tier's fixtures: ``server`` is each of the two servers in turn, the simulator and the
real vLLM (its URL in SPARKKIT_VLLM_URL, set by `make test-vllm`; without it the vLLM half skips,
and fails under CI). Every test here is marked ``vllm_contract``; `make test` never collects them
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


@pytest.fixture(scope="session")
def simulator_server():
    with servers.simulator(servers.serve_args()) as server:
        yield server


@pytest.fixture(scope="session")
def vllm_server():
    url = os.environ.get("SPARKKIT_VLLM_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("SPARKKIT_VLLM_URL is not set: run the contract tier with `make test-vllm`")
        pytest.skip("no real vLLM server (SPARKKIT_VLLM_URL): `make test-vllm` starts one")
    server = servers.Server("vllm", url.rstrip("/"))
    yield server
    assert servers.healthy(server.base_url), "the real vLLM server is no longer healthy after the tests"


@pytest.fixture(params=KINDS)
def server(request) -> servers.Server:
    return request.getfixturevalue(f"{request.param}_server")


def sim_differs(server: servers.Server, request: pytest.FixtureRequest, reason: str) -> None:
    """Mark this test as a known difference of the simulator from vLLM: on the simulator it is an
    xfail with ``strict=True``, so the day the simulator behaves like vLLM the test says so (XPASS
    fails) and the mark must go."""
    if server.is_sim:
        request.applymarker(pytest.mark.xfail(reason=f"simulator differs from vLLM: {reason}", strict=True))
