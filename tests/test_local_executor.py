"""The local executor runs real processes on this machine: bytes, exit codes, stderr, timeouts,
as the SSH executor answers them (tests/integration/test_executor.py)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from sparkkit.errors import OperationError, RemoteCommandError
from sparkkit.host.connect import executor_for
from sparkkit.host.local import LocalExecutor
from sparkkit.host.ssh import SshExecutor
from sparkkit.inventory.build import build_config
from sparkkit.inventory.layers import load_host_layers

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def ex():
    executor = LocalExecutor("here")
    yield executor
    executor.close()


def test_bytes_exit_code_and_stderr_come_back_apart(ex):
    data = bytes(range(256)) * 40 + b"no newline at the end"
    result = ex.run(["sh", "-c", "cat; printf 'to stderr' >&2; exit 3"], stdin=data, check=False)
    assert result.rc == 3
    assert result.stdout == data.decode("utf-8", "replace")
    assert result.stderr == "to stderr"
    assert int(ex.run(["sh", "-c", "wc -c"], stdin=data).stdout) == len(data)
    assert ex.round_trips == 2 and ex.connects == 1 and ex.dropped == 0


def test_a_failure_raises_when_checked(ex):
    with pytest.raises(RemoteCommandError, match=r"exit 4\): sh -c 'echo bad >&2; exit 4'\n  bad") as caught:
        ex.run(["sh", "-c", "echo bad >&2; exit 4"])
    assert caught.value.rc == 4
    with pytest.raises(RemoteCommandError):
        ex.run(["false"])


def test_a_missing_program_is_exit_127(ex):
    result = ex.run(["sparkkit-no-such-program"], check=False)
    assert result.rc == 127 and "sparkkit-no-such-program" in result.stderr


def test_arguments_reach_the_command_unexpanded(ex):
    tricky = ["$HOME", "a b", "it's", "`id`", "x;y", "\n"]
    assert ex.run(["printf", "%s|", *tricky]).stdout == "|".join(tricky) + "|"


def test_a_command_without_stdin_sees_end_of_file(ex):
    assert ex.run(["sh", "-c", "cat; echo done"]).stdout == "done\n"


def test_large_output_arrives_whole(ex):
    out = ex.run(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"]).stdout
    assert len(out) == 3_000_000 and set(out) == {"x"}


def test_a_timeout_kills_the_command_and_what_it_started(ex, tmp_path):
    pid_file = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(OperationError, match="here: command timed out after 1s: sh -c"):
        ex.run(["sh", "-c", 'sleep 30 & echo $! > "$1"; wait', "sh", str(pid_file)], timeout_s=1)
    assert time.monotonic() - start < 10  # not held up by the grandchild's open pipes
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the grandchild outlived the timeout"
    assert ex.run(["echo", "after"]).stdout == "after\n"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped


def test_it_is_local_and_forwards_a_loopback_port_as_itself(ex):
    assert ex.is_local is True
    assert ex.forward(18004) == 18004
    assert ex.forward(18004, "0.0.0.0") == 18004
    assert ex.forward(18004, "localhost") == 18004


def test_a_port_on_another_address_is_relayed_to_loopback(ex):
    """A service bound to an address that is not loopback (here: this machine's host name, which
    the executor cannot prove reachable on loopback) is reached through a relay on a loopback port."""
    other = socket.gethostname()
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        conn.sendall(b"pong:" + conn.recv(100))
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    port = ex.forward(server.getsockname()[1], other)
    assert port != server.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"ping")
        assert sock.recv(100) == b"pong:ping"
    server.close()


def test_the_inventory_picks_the_executor(tmp_path):
    layers = load_host_layers(REPO, "rehearsal")
    assert isinstance(executor_for(build_config(layers)), SshExecutor)
    local = load_host_layers(REPO, "rehearsal", ["ansible_connection=local"])
    ex = executor_for(build_config(local))
    assert isinstance(ex, LocalExecutor) and ex.host_name == "rehearsal"
    assert os.getpid() != int(ex.run(["sh", "-c", "echo $$"]).stdout)
