"""Fleet planning: host selection, rolling batches, stop rules, placement partners, the verdict."""

from __future__ import annotations

import pytest

from sparkkit.errors import InputError
from sparkkit.fleet.plan import (HostStatus, batches, fleet_verdict, names_a_fleet, partners_to_roll_back,
                                 resolve_hosts, stop_reason)
from sparkkit.inventory.layers import group_members

from .projects import make_project

PASSED, FAILED, DEPLOY_FAILED, UNREACHABLE, LOST, PARTNER_FAILED, SKIPPED = (
    HostStatus.PASSED, HostStatus.FAILED, HostStatus.DEPLOY_FAILED, HostStatus.UNREACHABLE, HostStatus.LOST,
    HostStatus.PARTNER_FAILED, HostStatus.SKIPPED)
HOSTS = ["a", "b", "c", "d", "e"]
GROUPS = {"all": HOSTS, "left": ["a", "b"], "right": ["d", "c"], "empty": []}


def test_a_group_resolves_to_its_hosts_in_inventory_order():
    assert resolve_hosts("right", hosts=HOSTS, groups=GROUPS) == ("d", "c")
    assert resolve_hosts("all", hosts=HOSTS, groups=GROUPS) == tuple(HOSTS)


def test_a_list_mixes_hosts_and_groups_each_host_once():
    assert resolve_hosts("e, left,a,right", hosts=HOSTS, groups=GROUPS) == ("e", "a", "b", "d", "c")


def test_unknown_names_are_all_named_with_what_is_known():
    with pytest.raises(InputError) as err:
        resolve_hosts("a,nope,zzz", hosts=HOSTS, groups=GROUPS)
    text = str(err.value)
    assert text.startswith("inventory/hosts.yml: unknown host or group 'nope', 'zzz'")
    assert "hosts: a, b, c, d, e" in text and "groups: all, empty, left, right" in text


@pytest.mark.parametrize("spec", ["", ",", "a,,b", " "])
def test_empty_parts_are_refused(spec):
    with pytest.raises(InputError, match="expected a host, a group"):
        resolve_hosts(spec, hosts=HOSTS, groups=GROUPS)


def test_an_empty_group_is_refused():
    with pytest.raises(InputError, match="group 'empty' has no hosts"):
        resolve_hosts("empty", hosts=HOSTS, groups=GROUPS)


def test_only_a_single_plain_host_takes_the_single_host_path():
    assert not names_a_fleet("a", hosts=HOSTS)
    assert names_a_fleet("left", hosts=HOSTS)
    assert names_a_fleet("a,b", hosts=HOSTS)


def test_parallel_is_one_batch_and_serial_cuts_in_order():
    hosts = ("a", "b", "c", "d", "e")
    assert batches(hosts, None) == [hosts]
    assert batches(hosts, 2) == [("a", "b"), ("c", "d"), ("e",)]
    assert batches(hosts, 1) == [(h,) for h in hosts]
    assert batches(hosts, 10) == [hosts]
    assert batches((), 2) == []


def test_placement_partners_share_a_batch():
    hosts = ("a", "b", "c", "d", "e")
    # b and d share a placement: they go together, the batch may exceed serial
    assert batches(hosts, 1, together=[("b", "d")]) == [("a",), ("b", "d"), ("c",), ("e",)]
    assert batches(hosts, 2, together=[("b", "d")]) == [("a",), ("b", "d"), ("c", "e")]


def test_serial_below_one_is_bad_input():
    with pytest.raises(InputError, match="--serial must be at least 1, got 0"):
        batches(("a",), 0)


def test_rolling_stops_at_the_first_failure_without_max_fail_percent():
    assert stop_reason({"a": PASSED, "b": PASSED}, total=5, max_fail_percent=None) is None
    assert stop_reason({"a": PASSED, "b": FAILED}, total=5, max_fail_percent=None) == "host b failed"
    assert stop_reason({"a": UNREACHABLE}, total=5, max_fail_percent=None) == "host a unreachable"


def test_max_fail_percent_tolerates_failures_up_to_its_share():
    statuses = {"a": FAILED, "b": PASSED, "c": PASSED, "d": PASSED}
    assert stop_reason(statuses, total=10, max_fail_percent=10) is None  # 10% is not more than 10%
    statuses["b"] = LOST
    reason = stop_reason(statuses, total=10, max_fail_percent=10)
    assert reason == "2 of 10 hosts failed (20%), more than --max-fail-percent 10"
    assert stop_reason(statuses, total=10, max_fail_percent=0) is not None


def test_a_passed_partner_of_a_failed_host_is_rolled_back():
    statuses = {"a": DEPLOY_FAILED, "b": PASSED, "c": PASSED, "d": PASSED}
    assert partners_to_roll_back(statuses, [("a", "b"), ("c", "d")]) == {"b": "a"}
    assert partners_to_roll_back({"a": PASSED, "b": PASSED}, [("a", "b")]) == {}


def test_verdict_passes_only_when_every_host_passed():
    v = fleet_verdict({"a": PASSED, "b": PASSED}, stopped=None)
    assert v.passed and v.line == "PASS — 2/2 hosts passed"
    v = fleet_verdict({"a": PASSED, "b": FAILED, "c": SKIPPED, "d": PARTNER_FAILED}, stopped="host b failed")
    assert not v.passed
    assert v.counts == {PASSED: 1, FAILED: 1, PARTNER_FAILED: 1, SKIPPED: 1}
    assert v.line == ("FAIL — 1/4 hosts passed (1 passed, 1 failed, 1 partner-failed, 1 skipped); "
                      "rolling run stopped: host b failed")
    assert not fleet_verdict({}, stopped=None).passed


def test_group_members_reads_nested_groups_in_file_order(tmp_path):
    proj = make_project(tmp_path, {"inventory/hosts.yml": """
        all:
          children:
            fleet:
              children:
                east: {hosts: {e2: {ansible_host: x}, e1: {ansible_host: y}}}
                west: {hosts: {w1: {ansible_host: z}}}
            solo: {hosts: {s: {ansible_host: q}}}
        """})
    groups = group_members(proj)
    assert groups["fleet"] == ["e2", "e1", "w1"]
    assert groups["east"] == ["e2", "e1"]
    assert groups["all"] == ["e2", "e1", "w1", "s"]
    assert resolve_hosts("fleet,s", hosts=["e1", "e2", "s", "w1"], groups=groups) == ("e2", "e1", "w1", "s")


def test_ports_on_an_address_other_than_the_ssh_one_are_reached_through_the_tunnel():
    from dataclasses import replace

    from sparkkit.inventory.build import build_config
    from sparkkit.inventory.layers import load_host_layers
    from sparkkit.probe.targets import needs_tunnel

    from .projects import REPO

    cfg = build_config(load_host_layers(REPO, "spark"))
    at = lambda bind, ssh="spark.local": replace(cfg, bind_address=bind, ssh=replace(cfg.ssh, address=ssh))  # noqa: E731
    assert needs_tunnel(at("127.0.0.1")) and needs_tunnel(at("127.0.0.1", ssh="127.0.0.1"))
    assert needs_tunnel(at("10.77.0.101", ssh="10.77.0.11"))  # a fleet rehearsal host's publish address
    assert not needs_tunnel(at("0.0.0.0"))
    assert not needs_tunnel(at("192.168.1.5", ssh="192.168.1.5"))
