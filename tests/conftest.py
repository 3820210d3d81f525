"""Run-wide test settings, for `make test`: first ``pytest -n N -m "not timing"`` (pytest-xdist), then
``pytest -m timing``, the tests that measure time against a known truth, alone on a quiet machine.

Under pytest-xdist the tests of one group run on one worker, in their order. A group is a module
(integration modules share a stack and hand release ids from test to test), unless GROUPS names
another: the two fleet modules share one, as their network namespaces have fixed names, and a test
that needs nothing from its neighbours may have one of its own. Groups that take longest start
first, so that the run does not end waiting on one of them.

(xdist's own ``--dist loadgroup`` cannot be used: it renames test ids, which pytest 9.2 ignores.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

GROUPS = {
    "tests/integration/test_fleet.py": "netns",
    "tests/integration/test_placement.py": "netns",
    # a stack of its own, nothing from the tests before it
    "tests/integration/test_verify.py::test_a_first_deploy_that_fails_leaves_the_host_clean": "verify-first-deploy",
}
# longest first (seconds in a `make test` on an otherwise quiet 2-core machine); every other group after these
SLOW_GROUPS = (
    "tests/integration/test_faults.py",           # 250: the fault matrix
    "netns",                                      # 210: test_fleet.py, then test_placement.py
    "tests/integration/test_verify_failures.py",  # 190+: deploy-and-verify five times, four rollbacks
    "tests/integration/test_verify.py",           # 160: deploy-and-verify with every suite, verify, a rollback
    "verify-first-deploy",                        # 35
)


CONTRACT_DIR = Path(__file__).resolve().parent / "contract"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/contract/ (the contract tier against a real vLLM) is collected only when the run selects
    its marker (`make test-vllm`: ``-m vllm_contract``): `make test` never runs it."""
    if collection_path == CONTRACT_DIR and "vllm_contract" not in (config.option.markexpr or ""):
        return True
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timing: measures time against a known truth; `make test` runs these "
                                       "alone, after the others (nothing else may load the machine meanwhile)")


def group_of(nodeid: str) -> str:
    """The group of a test id: its entry in GROUPS (by test, then by module), else its module."""
    module, _, name = nodeid.partition("::")
    return GROUPS.get(f"{module}::{name.split('[')[0]}") or GROUPS.get(module) or module


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {group: i for i, group in enumerate(SLOW_GROUPS)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))  # stable: order within a group


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent with -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        """xdist's scheduler by scope, with a group as the scope, in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False  # keep the order above (xdist would sort by test count)
    return ByGroup(config, log)
