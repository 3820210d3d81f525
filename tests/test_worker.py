"""The worker shell's framing, run for real with `sh` on this machine through a pipe that stands in
for the SSH channel: answers are believed only when their nonce and byte counts check out."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import time

import pytest

from sparkkit.host.worker import WORKER_BANNER, WORKER_SCRIPT, FramingError, Worker


class PipeChannel:
    """What Worker uses of a paramiko channel, over a local process's stdin and stdout."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.closed = False
        self.eof_received = False

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def sendall(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv_ready(self) -> bool:
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def recv(self, n: int) -> bytes:
        data = os.read(self.fileno(), n)
        self.eof_received = not data
        return data

    def recv_stderr_ready(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def start(tmp_path):
    procs = []

    def start_worker(env: dict | None = None) -> Worker:
        proc = subprocess.Popen(["sh", "-c", WORKER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        procs.append(proc)
        worker = Worker(PipeChannel(proc))
        assert worker.line(time.monotonic() + 10).decode() == WORKER_BANNER
        return worker

    yield start_worker
    for proc in procs:
        proc.kill()
        proc.wait()


def deadline() -> float:
    return time.monotonic() + 10


def test_commands_and_their_bytes_come_back_in_step(start):
    worker = start()
    data = bytes(range(256)) * 10
    assert worker.call(b"cat; printf err >&2; exit 3", data, deadline()) == (3, data, b"err")
    assert worker.call(b"printf 'a\\nb'", b"", deadline()) == (0, b"a\nb", b"")


def test_a_short_write_stops_the_worker_instead_of_leaving_it_out_of_step(start, tmp_path):
    """A `head -c` that writes fewer bytes than asked (as on a full $TMPDIR): the worker exits; the
    next command is never answered from a stream out of step."""
    fake = tmp_path / "bin"
    fake.mkdir()
    head = fake / "head"
    head.write_text('#!/bin/sh\n'
                    'if [ "$1" = --version ]; then echo "head (GNU coreutils) 9.1"; exit 0; fi\n'
                    'n=$(( $2 - 1 )); [ "$n" -gt 0 ] && exec /usr/bin/head -c "$n"; exit 1\n')
    head.chmod(head.stat().st_mode | stat.S_IEXEC)
    worker = start({"PATH": f"{fake}:{os.environ['PATH']}"})
    with pytest.raises((EOFError, FramingError)):
        worker.call(b"echo ran", b"", deadline())


def test_an_answer_to_another_request_is_refused(start):
    worker = start()
    worker.chan.sendall(b"0123456789abcdef 4 0\nid\n")  # a request the Worker did not make
    with pytest.raises(FramingError):
        worker.call(b"echo mine", b"", deadline())


def test_a_garbled_answer_line_is_refused():
    class Canned:
        closed = eof_received = False

        def __init__(self, answer: bytes, fd: int):
            self.answer, self.fd = answer, fd

        def sendall(self, data): pass
        def recv_ready(self): return bool(self.answer)
        def recv_stderr_ready(self): return False
        def fileno(self): return self.fd

        def recv(self, n):
            out, self.answer = self.answer[:n], self.answer[n:]
            return out

    with open(os.devnull, "rb") as null:  # always readable, as a channel with data waiting is
        for answer in (b"0 5 0\nhello\n", b"junk junk junk junk\n", b"\n"):
            with pytest.raises(FramingError):
                Worker(Canned(answer, null.fileno())).call(b"echo hello", b"", deadline())
