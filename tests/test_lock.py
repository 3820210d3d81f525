"""Taking over a lock without --break-lock needs proof that its holder is gone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sparkkit.deploy.lock import process_identity, stale_holder, start_ticks

ME = {"machine": "m1", "boot": "b1", "pidns": "pid:[4026531836]", "pid": 100, "start": 5}


def holder(**process) -> dict:
    them = {"machine": "m1", "boot": "b1", "pidns": "pid:[4026531836]", "pid": 42, "start": 7, **process}
    return {"who": "ops@box", "pid": them["pid"], "token": "t0k", "process": them}


@pytest.mark.parametrize("lock, started, stale", [
    (holder(), {}, True),                                  # its pid is dead
    (holder(), {42: 9}, True),                             # its pid now belongs to another process
    (holder(), {42: 7}, False),                            # it is alive
    (holder(machine="m2"), {}, False),                     # another machine with the same hostname
    (holder(boot="b0"), {}, False),                        # an earlier boot (or a cloned machine-id)
    (holder(pidns="pid:[4026532999]"), {}, False),         # another container on this machine
    (holder(machine=""), {}, False),                       # no machine id: nothing proves it
    (holder(pid=100), {}, False),                          # this very process
    (holder(pid="42"), {}, False),                         # a damaged lock file
    ({"who": "ops@box", "pid": 42, "token": "t0k"}, {}, False),  # a lock without a process identity
    ({**holder(), "token": None}, {}, False),              # no token to take it over by
])
def test_a_lock_is_taken_over_only_on_proof_its_holder_is_gone(lock, started, stale):
    assert stale_holder(lock, ME, started=started.get) is stale


def test_process_identity_of_this_process_and_a_dead_one():
    me = process_identity()
    assert me["pid"] == os.getpid() and me["start"] == start_ticks(os.getpid()) is not None
    assert me["boot"] and me["pidns"].startswith("pid:[")
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)
    assert start_ticks(dead) is None
    lock = {"token": "t", "process": {**me, "pid": dead, "start": 1}}
    assert stale_holder(lock, me) is (bool(me["machine"]))  # no /etc/machine-id: no proof, no takeover
    assert not stale_holder({"token": "t", "process": me}, {**me, "pid": me["pid"] + 1})  # alive
