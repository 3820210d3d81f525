"""Run-wide test settings, for `make test`: ``pytest -n N --dist loadgroup --no-loadscope-reorder``.

Under pytest-xdist the tests of one module stay together, on one worker and in their order:
integration modules share a stack and hand release ids from test to test. A module (or a test that
needs nothing from its neighbours) may name a group of its own with ``pytest.mark.xdist_group``:
the two fleet modules share the group "netns", as their network namespaces have fixed names.
The groups that take longest start first, so that the run does not end waiting on one of them.
"""

from __future__ import annotations

import pytest

# longest first (seconds on a quiet 2-core machine, roughly); every other group comes after these
SLOW_GROUPS = (
    "tests/integration/test_verify.py",       # ~250: deploy-and-verify, five times, rollbacks
    "netns",                                  # ~220: test_fleet.py and test_placement.py, one after the other
    "tests/integration/test_faults.py",       # ~150: the fault matrix
    "tests/integration/test_probe_rehearsal.py",  # ~70: full probe suites
)


def _group(item: pytest.Item) -> str:
    mark = item.get_closest_marker("xdist_group")
    return (mark.args[0] if mark.args else mark.kwargs["name"]) if mark else item.nodeid.split("::")[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(_group(item)))
    rank = {group: i for i, group in enumerate(SLOW_GROUPS)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable: each module keeps its order
