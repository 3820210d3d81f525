"""Host keys on every hop, against the real OpenSSH server: a ProxyJump hop is checked against the
same known_hosts, with the same policy, as a direct connection. The testbed's sshd is both the hop
(reached as ``localhost``) and the target (reached from the hop as ``127.0.0.1``), so the two have
different known_hosts entries (``[localhost]:2222`` and ``[127.0.0.1]:2222``) for the same key."""

from __future__ import annotations

import pytest

from sparkkit.host.ssh import HostKeyError, SshExecutor
from sparkkit.inventory.model import SshSettings
from testbed.stack import SSH_PORT, TESTBED

pytestmark = pytest.mark.integration

# a valid ed25519 key that is not the testbed's: the "changed" key
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKyKWhCtJYm6NtNEcZ5HnOPn4R/kIdOyUJtmVX9tqbJV"


def _real_key() -> str:
    line = (TESTBED / "ssh" / "known_hosts").read_text().split("\n")[0]
    return " ".join(line.split()[1:3])


@pytest.fixture
def jump(testbed, tmp_path, monkeypatch):
    """~/.ssh/config with host ``target`` reached through the hop ``jumphost``; returns a function
    that makes an executor with the given known_hosts lines."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = TESTBED / "ssh" / "id_ed25519"
    (home / ".ssh" / "config").write_text(
        f"Host target\n  HostName 127.0.0.1\n  Port {SSH_PORT}\n  User root\n  IdentityFile {key}\n"
        f"  ProxyJump jumphost\n"
        f"Host jumphost\n  HostName localhost\n  Port {SSH_PORT}\n  User root\n  IdentityFile {key}\n"
        f"  IdentitiesOnly yes\n")
    monkeypatch.setenv("HOME", str(home))
    known = tmp_path / "known_hosts"
    made = []

    def make(lines: list[str], *, accept_new: bool = False) -> SshExecutor:
        known.write_text("".join(line + "\n" for line in lines))
        ex = SshExecutor(SshSettings(address="target", port=SSH_PORT, user="root", key_file=key,
                                     known_hosts_file=known, accept_new_host_key=accept_new), "jumped")
        made.append(ex)
        return ex

    make.known = known
    yield make
    for ex in made:
        ex.close()


def test_both_hops_known_connects_through_the_jump(jump):
    ex = jump([f"[127.0.0.1]:{SSH_PORT} {_real_key()}", f"[localhost]:{SSH_PORT} {_real_key()}"])
    assert ex.run(["echo", "through the hop"]).stdout == "through the hop\n"
    assert ex._conn.gateway is not None  # it did go through a hop


def test_an_unknown_hop_key_is_refused_as_on_a_direct_connection(jump):
    ex = jump([f"[127.0.0.1]:{SSH_PORT} {_real_key()}"])  # the target is known, the hop is not
    with pytest.raises(HostKeyError, match=r"unknown host key for \[localhost\]"):
        ex.run(["true"])
    assert "localhost" not in jump.known.read_text()  # nothing recorded


def test_a_changed_hop_key_is_refused_even_with_accept_new(jump):
    for accept_new in (False, True):
        ex = jump([f"[127.0.0.1]:{SSH_PORT} {_real_key()}", f"[localhost]:{SSH_PORT} {OTHER_KEY}"],
                  accept_new=accept_new)
        with pytest.raises(HostKeyError, match=r"host key of localhost \(a ProxyJump hop to target\) "
                                               r"has CHANGED"):
            ex.run(["true"])


def test_a_changed_target_key_behind_a_known_hop_is_refused(jump):
    ex = jump([f"[127.0.0.1]:{SSH_PORT} {OTHER_KEY}", f"[localhost]:{SSH_PORT} {_real_key()}"],
              accept_new=True)
    with pytest.raises(HostKeyError, match=r"host key of 127.0.0.1 has CHANGED"):
        ex.run(["true"])


def test_accept_new_records_an_unknown_hop_key_and_says_so(jump):
    ex = jump([f"[127.0.0.1]:{SSH_PORT} {_real_key()}"], accept_new=True)
    assert ex.run(["echo", "ok"]).stdout == "ok\n"
    assert f"[localhost]:{SSH_PORT} {_real_key()}" in jump.known.read_text()
    assert any("accepted new host key for [localhost]" in n for n in ex.notices)
