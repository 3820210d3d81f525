"""The SSH executor against the real sshd: the worker shell and the one-channel-per-command
fallback must answer every command identically (bytes, exit codes, stderr, timeouts)."""

from __future__ import annotations

import pytest

from sparkkit.inventory.model import SshSettings
from sparkkit.errors import OperationError, RemoteCommandError
from sparkkit.host.ssh import SshExecutor
from testbed.stack import SSH_PORT, TESTBED

pytestmark = pytest.mark.integration


def settings() -> SshSettings:
    return SshSettings(address="127.0.0.1", port=SSH_PORT, user="root", key_file=TESTBED / "ssh" / "id_ed25519",
                       known_hosts_file=TESTBED / "ssh" / "known_hosts", accept_new_host_key=False)


@pytest.fixture(params=[True, False], ids=["worker", "channel"])
def ex(testbed, request):
    executor = SshExecutor(settings(), "rehearsal", use_worker=request.param)
    yield executor
    executor.close()


def test_bytes_exit_code_and_stderr_come_back_apart(ex):
    data = bytes(range(256)) * 40 + b"no newline at the end"
    result = ex.run(["sh", "-c", "cat; printf 'to stderr' >&2; exit 3"], stdin=data, check=False)
    assert result.rc == 3
    assert result.stdout == data.decode("utf-8", "replace")
    assert result.stderr == "to stderr"
    assert int(ex.run(["sh", "-c", "wc -c"], stdin=data).stdout) == len(data)
    with pytest.raises(RemoteCommandError):
        ex.run(["false"])


def test_arguments_reach_the_command_unexpanded(ex):
    tricky = ["$HOME", "a b", "it's", "`id`", "x;y", "\n"]
    out = ex.run(["printf", "%s|", *tricky]).stdout
    assert out == "|".join(tricky) + "|"


def test_a_command_without_stdin_sees_end_of_file(ex):
    assert ex.run(["sh", "-c", "cat; echo done"]).stdout == "done\n"


def test_large_output_arrives_whole(ex):
    out = ex.run(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"]).stdout
    assert len(out) == 3_000_000 and set(out) == {"x"}


def test_timeout_then_the_next_command_still_runs(ex):
    with pytest.raises(OperationError, match="timed out after 1s"):
        ex.run(["sleep", "5"], timeout_s=1)
    assert ex.run(["echo", "after"]).stdout == "after\n"
    assert ex.round_trips == 2


def test_the_worker_serves_every_command_on_one_channel(testbed):
    ex = SshExecutor(settings(), "rehearsal")
    try:
        # the parent of the shell that runs the command line is the worker
        parents = {ex.run(["sh", "-c", "cut -d ' ' -f 4 /proc/$PPID/stat"]).stdout for _ in range(3)}
        assert len(parents) == 1  # the same worker shell started all three
        assert ex.notices == []
    finally:
        ex.close()
