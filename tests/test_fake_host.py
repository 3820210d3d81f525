"""The fake host that ships in the package: its script, its record, its faults; and the seam that
all three executors share."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from sparkkit.errors import ConnectionLost, HostUnreachable, OperationError, RemoteCommandError
from sparkkit.host.executor import Executor, Result
from sparkkit.host.fake import FakeHost
from sparkkit.host.local import LocalExecutor
from sparkkit.host.ssh import SshExecutor


def test_it_records_every_command_with_its_stdin_size_and_pty():
    host = FakeHost()
    host.run(["echo", "a b"])
    host.run(["sh", "-c", "cat > f"], stdin=b"12345", pty=True, timeout_s=9)
    assert host.commands == ["echo 'a b'", "sh -c 'cat > f'"]
    first, second = host.ran
    assert first.argv == ("echo", "a b") and first.number == 1 and first.stdin_bytes == 0 and not first.pty
    assert second.stdin_bytes == 5 and second.stdin == b"12345" and second.pty and second.timeout_s == 9
    assert host.round_trips == 2 and host.connects == 1 and host.dropped == 0


def test_the_first_matching_pattern_answers_and_an_unmatched_command_succeeds_silently():
    host = FakeHost(script=[("docker", "first\n"), ("docker ps", "never: an earlier entry matches"),
                            ("cat", Result(rc=0, stdout="", stderr="warned"))])
    assert host.run(["docker", "ps"]).stdout == "first\n"
    assert host.run(["cat"]) == Result(rc=0, stdout="", stderr="warned")
    assert host.run(["true"]) == Result(rc=0, stdout="", stderr="")


def test_a_callable_answers_from_state():
    state = {"ups": 0}

    def up(ran):
        state["ups"] += 1
        return f"up {state['ups']} of {ran.argv[-1]}"

    host = FakeHost(script=[("up", up), ("ps", lambda _ran: Result(rc=0, stdout=str(state["ups"]), stderr=""))])
    assert host.run(["ps"]).stdout == "0"
    assert host.run(["up", "a"]).stdout == "up 1 of a"
    assert host.run(["ps"]).stdout == "1"


def test_a_scripted_non_zero_exit_raises_when_checked():
    host = FakeHost(script=[("false", Result(rc=3, stdout="", stderr="went wrong"))])
    with pytest.raises(RemoteCommandError, match="exit 3") as caught:
        host.run(["false"])
    assert caught.value.rc == 3 and caught.value.stderr == "went wrong"
    assert host.run(["false"], check=False).rc == 3


def test_fail_at_fails_exactly_the_nth_command_with_an_exit_code():
    host = FakeHost(script=[("x", "ok")], fail_at=2, fail_with=7)
    assert host.run(["x"]).stdout == "ok"
    with pytest.raises(RemoteCommandError, match="exit 7"):
        host.run(["x"])
    assert host.run(["x"]).stdout == "ok"
    assert [r.fault for r in host.ran] == [None, "fail", None]
    unchecked = FakeHost(fail_at=1)
    assert unchecked.run(["x"], check=False).rc == 1


@pytest.mark.parametrize("error", [OperationError("remote command timed out after 5s"), KeyboardInterrupt()])
def test_fail_at_can_raise_an_exception_instead(error):
    host = FakeHost(fail_at=1, fail_with=error)
    with pytest.raises(type(error)):
        host.run(["sleep", "10"], check=False)
    assert host.commands == ["sleep 10"]


def test_drop_at_loses_the_connection_and_the_next_command_reconnects():
    host = FakeHost(script=[("x", "ok")], drop_at=2, host_name="box")
    host.run(["x"])
    with pytest.raises(ConnectionLost, match="box: SSH connection lost during: x"):
        host.run(["x"])
    assert host.dropped == 1 and host.connects == 1
    assert host.run(["x"]).stdout == "ok"
    assert host.connects == 2
    assert host.notices == ["box: the SSH connection had dropped; reconnected"]
    host.close()
    host.run(["x"])  # a reconnect after a close is no drop
    assert host.connects == 3 and len(host.notices) == 1 and host.closed == 1


def test_an_unreachable_host_never_connects():
    host = FakeHost(unreachable=True)
    with pytest.raises(HostUnreachable):
        host.run(["true"])
    assert host.connects == 0 and host.commands == []


def test_forward_gives_the_port_itself_and_records_it():
    host = FakeHost()
    assert host.forward(8004) == 8004
    assert host.forward(8080, "10.0.0.5") == 8080
    assert host.forwarded == [("127.0.0.1", 8004), ("10.0.0.5", 8080)]


def protocol_members() -> set[str]:
    names = {n for n in Executor.__annotations__}
    names |= {n for n, v in vars(Executor).items() if inspect.isfunction(v) and not n.startswith("_")}
    return names


@pytest.mark.parametrize("make", [
    lambda: FakeHost(),
    lambda: LocalExecutor("here"),
    lambda: SshExecutor(settings=None, host_name="there"),
], ids=["fake", "local", "ssh"])
def test_every_executor_has_the_whole_seam(make):
    ex = make()
    members = protocol_members()
    assert {"run", "open", "forward", "close", "notices", "round_trips", "connects", "dropped",
            "is_local", "host_name"} <= members
    for name in members:
        assert hasattr(ex, name), name
    assert ex.is_local is isinstance(ex, LocalExecutor)
    assert (ex.round_trips, ex.connects, ex.dropped, ex.notices) == (0, 0, 0, [])
    for name in ("run", "forward"):
        expected = inspect.signature(getattr(Executor, name)).parameters
        assert list(inspect.signature(getattr(ex, name)).parameters) == [p for p in expected if p != "self"]


def test_is_local_is_not_a_constructor_argument():
    for cls in (FakeHost, LocalExecutor, SshExecutor):
        assert "is_local" not in {f.name for f in dataclasses.fields(cls)}
