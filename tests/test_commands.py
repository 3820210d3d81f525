"""Remote commands are argv lists; hostile values stay data when a shell runs them."""

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from sparkkit.host import commands as cmd
from sparkkit.deploy.apply import chain

HOSTILE = [
    "; rm -rf /",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a'b\"c",
    "line1\nline2",
    "&& touch PWNED ||",
    "*",
    "-rf",
]


def test_compose_up_exact():
    argv = cmd.compose_up("sparkkit", "/opt/sparkkit/releases/r1/docker-compose.yml", ["vllm-annie", "ollama"],
                          remove_orphans=True)
    assert shlex.join(argv) == ("docker compose -p sparkkit -f /opt/sparkkit/releases/r1/docker-compose.yml "
                                "up -d --no-deps --remove-orphans vllm-annie ollama")


def test_compose_logs_and_down_exact():
    assert shlex.join(cmd.compose_logs("p", "/r/c.yml", "searxng", tail=30)) == \
        "docker compose -p p -f /r/c.yml logs --no-color --tail 30 searxng"
    assert shlex.join(cmd.compose_down("p", "/r/c.yml", timeout_s=30)) == \
        "docker compose -p p -f /r/c.yml down --timeout 30"


def test_scripts_take_values_as_arguments_only():
    argv = cmd.switch_current("/opt/x", "r123")
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", "/opt/x", "r123"]
    assert "/opt/x" not in argv[2] and "r123" not in argv[2]


def _sh(argv, cwd):
    """Run an argv as sshd would: the user's shell gets one command line, built by shlex.join."""
    return subprocess.run(["sh", "-c", shlex.join(argv)], cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_stay_data(tmp_path, value):
    root = tmp_path / f"root {value}"
    release = "rel" + value.replace("/", "_")
    (root / "releases" / release).mkdir(parents=True)

    assert _sh(cmd.switch_current(str(root), release), tmp_path).returncode == 0
    assert (root / "current").resolve() == (root / "releases" / release).resolve()

    line = json.dumps({"detail": value})
    assert _sh(cmd.append_audit(str(root), line), tmp_path).returncode == 0
    assert (root / "audit.log").read_text() == line + "\n"

    info = json.dumps({"who": value, "token": "tok"})
    out = _sh(cmd.acquire_lock(str(root), info, break_lock=False), tmp_path)
    assert out.stdout.splitlines()[0] == "ACQUIRED"
    assert json.loads((root / "lock" / "info.json").read_text())["who"] == value
    assert _sh(cmd.release_lock(str(root), "tok"), tmp_path).returncode == 0
    assert not (root / "lock").exists()

    assert _sh(chain(cmd.prune_releases(str(root), [release]), ["true"]), tmp_path).returncode == 0
    assert not (root / "releases" / release).exists()

    # the lock taken and the facts read in one round trip; the audit line and the unlock in another
    preflight = cmd.preflight(str(root), value, [value], runtimes=False)
    out = _sh(cmd.locked(cmd.acquire_lock(str(root), info, break_lock=False), preflight), tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("==sparkkit:lock==\nACQUIRED\n==sparkkit:disk==")
    assert _sh(cmd.closing(cmd.append_audit(str(root), line), cmd.release_lock(str(root), "tok")),
               tmp_path).stdout == ""
    assert not (root / "lock").exists() and (root / "audit.log").read_text() == line + "\n"  # not written twice

    assert not list(tmp_path.rglob("PWNED")), "a value was executed by the shell"
    assert Path("/").exists()


def test_lock_is_exclusive_and_shows_holder(tmp_path):
    root = str(tmp_path / "root")
    first = _sh(cmd.acquire_lock(root, '{"who": "alice", "token": "t1"}', break_lock=False), tmp_path)
    second = _sh(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=False), tmp_path)
    assert first.stdout.startswith("ACQUIRED")
    assert second.stdout.startswith("HELD") and "alice" in second.stdout
    # another holder's token does not release it
    _sh(cmd.release_lock(root, "t2"), tmp_path)
    assert (tmp_path / "root" / "lock").exists()
    broken = _sh(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=True), tmp_path)
    assert broken.stdout.startswith("ACQUIRED")
    assert "bob" in (tmp_path / "root" / "lock" / "info.json").read_text()


def test_a_stale_token_breaks_only_the_lock_it_names(tmp_path):
    root = str(tmp_path / "root")
    _sh(cmd.acquire_lock(root, '{"who": "alice", "token": "t1"}', break_lock=False), tmp_path)
    # a run that thinks t0 is dead must not break alice's live lock
    refused = _sh(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=False, stale_token="t0"),
                  tmp_path)
    assert refused.stdout.startswith("HELD") and "alice" in refused.stdout
    taken = _sh(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=False, stale_token="t1"),
                tmp_path)
    assert taken.stdout.startswith("ACQUIRED")
    assert "bob" in (tmp_path / "root" / "lock" / "info.json").read_text()


FAKE_DOCKER = """#!/bin/sh
# a stand-in docker CLI: records its argv (one per line, NUL-free), answers slowly and out of order
printf '%s\\n' "$*" >> "$DOCKER_LOG"
case "$1 $2" in
  "version --format") sleep 0.3; echo 20.10.24 ;;
  "compose version") sleep 0.1; echo 2.40.3 ;;
  "info --format") echo '{"nvidia":{},"runc":{}}' ;;
  "image inspect") sleep 0.2; [ "$5" = "--" ] || exit 9; case "$6" in *missing*) exit 1 ;; *) echo "sha256:id-of-$6" ;; esac ;;
  "ps -aq") echo c1 ;;
  "inspect c1") echo '[]' ;;
  "compose -p")
    case "$*" in
      *"config --hash"*) sleep 0.2; echo "svc-a hash-a"; echo "svc-b hash-b" ;;
      *" up "*) echo "up ok" >&2 ;;
    esac ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker").write_text(FAKE_DOCKER)
    (bindir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setenv("DOCKER_LOG", str(log))
    return log


def test_preflight_script_prints_each_section_in_order_whatever_finishes_first(tmp_path, fake_docker):
    from sparkkit.host.facts import parse_preflight

    root = tmp_path / "root $(touch PWNED)"
    (root / "releases" / "r1").mkdir(parents=True)
    (root / "releases" / "r1" / "release.json").write_text("{}")
    images = ["img-a:1", "img-missing:2", "img-c:3"]
    done = _sh(cmd.preflight(str(root), "proj", images, runtimes=False), tmp_path)
    assert done.returncode == 0, done.stderr
    facts = parse_preflight(done.stdout)
    assert facts.docker_version == "20.10.24" and facts.compose_version == "2.40.3"
    assert facts.runtimes == ()  # not asked: no `docker info`
    assert "info --format" not in fake_docker.read_text()
    assert facts.images_missing == {"img-missing:2"}
    assert facts.image_ids == {"img-a:1": "sha256:id-of-img-a:1", "img-c:3": "sha256:id-of-img-c:3"}
    assert facts.releases == ("r1",) and facts.containers == ()
    with_runtimes = parse_preflight(_sh(cmd.preflight(str(root), "proj", images, runtimes=True), tmp_path).stdout)
    assert with_runtimes.runtimes == ("nvidia", "runc")
    assert not list(tmp_path.rglob("PWNED"))


def test_preflight_reads_what_the_current_release_says_each_service_runs(tmp_path, fake_docker):
    from sparkkit.host.facts import parse_preflight

    root = tmp_path / "root $(touch PWNED)"
    (root / "releases" / "r1").mkdir(parents=True)
    (root / "releases" / "r1" / "release.json").write_text("{}")
    record = _sh(cmd.record_live(str(root), "r1", [("svc-a", "hash-a", "img-a:1"), ("svc-b", "hash-b", "img-cur:9"),
                                                    ("svc-c", "hash-c", "img-cur:9")]), tmp_path)
    assert record.returncode == 0, record.stderr
    assert (root / "releases" / "r1" / "live.txt").read_text() == (
        "svc-a hash-a img-a:1\nsvc-b hash-b img-cur:9\nsvc-c hash-c img-cur:9\n")
    (root / "current").symlink_to("releases/r1")
    done = _sh(cmd.preflight(str(root), "proj", ["img-a:1"], runtimes=False), tmp_path)
    assert done.returncode == 0, done.stderr
    facts = parse_preflight(done.stdout)
    assert facts.current_release == "r1"
    assert facts.current_hashes == {"svc-a": "hash-a", "svc-b": "hash-b", "svc-c": "hash-c"}
    # the current release's images are looked up too (for drift), but never count as missing for the deploy
    assert facts.image_ids == {"img-a:1": "sha256:id-of-img-a:1", "img-cur:9": "sha256:id-of-img-cur:9"}
    assert facts.images_present == {"img-a:1"} and facts.images_missing == set()
    calls = fake_docker.read_text()
    assert calls.count("image inspect --format {{.Id}} -- img-cur:9") == 1
    assert calls.count("image inspect --format {{.Id}} -- img-a:1") == 1  # a deploy's own image: looked up once
    # no current release: nothing to compare with
    (root / "current").unlink()
    facts = parse_preflight(_sh(cmd.preflight(str(root), "proj", [], runtimes=False), tmp_path).stdout)
    assert facts.current_hashes == {} and facts.image_ids == {}
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_the_live_record_keeps_values_as_data(tmp_path, value):
    root = tmp_path / f"root{value}"
    (root / "releases" / "r1").mkdir(parents=True)
    done = _sh(cmd.record_live(str(root), "r1", [(f"svc{value}", "h", "img")]), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (root / "releases" / "r1" / "live.txt").read_text() == f"svc{value} h img\n"
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hashed_up_passes_values_through_as_data(tmp_path, fake_docker, value):
    from sparkkit.host.facts import parse_hashed_up

    argv = cmd.compose_up_hashed(f"proj{value}", f"/r/{value}.yml", ["svc-a", f"svc{value}"], remove_orphans=True,
                                 images=[f"img{value}", "img-missing"])
    done = _sh(argv, tmp_path)
    assert done.returncode == 0, done.stderr
    hashes, images = parse_hashed_up(done.stdout)
    assert hashes == {"svc-a": "hash-a", "svc-b": "hash-b"}
    if not any(c.isspace() for c in value):  # names with blanks are no image names; they only must stay data
        assert images == {f"img{value}": f"sha256:id-of-img{value}"}
    calls = fake_docker.read_text()
    assert f"compose -p proj{value} -f /r/{value}.yml up -d --no-deps --remove-orphans svc-a svc{value}" in calls
    assert "img-missing" not in images
    assert not list(tmp_path.rglob("PWNED"))


def test_the_facts_are_read_only_once_the_lock_is_taken(tmp_path):
    root = str(tmp_path / "root")
    probe = ["sh", "-c", "touch \"$1\"; echo READ", "sh", str(tmp_path / "read")]
    first = _sh(cmd.locked(cmd.acquire_lock(root, '{"who": "alice", "token": "t1"}', break_lock=False), probe), tmp_path)
    assert first.stdout == "==sparkkit:lock==\nACQUIRED\nREAD\n" and (tmp_path / "read").exists()
    (tmp_path / "read").unlink()
    second = _sh(cmd.locked(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=False), probe), tmp_path)
    assert second.returncode == 0 and second.stdout.startswith("==sparkkit:lock==\nHELD\n")
    assert "alice" in second.stdout and not (tmp_path / "read").exists()  # held: nothing read


def test_closing_releases_the_lock_when_the_audit_line_cannot_be_written(tmp_path):
    root = str(tmp_path / "root")
    _sh(cmd.acquire_lock(root, '{"who": "alice", "token": "t1"}', break_lock=False), tmp_path)
    (tmp_path / "file").write_text("")
    out = _sh(cmd.closing(cmd.append_audit(str(tmp_path / "file" / "below"), "{}"), cmd.release_lock(root, "t1")),
              tmp_path)
    assert out.returncode == 0 and out.stdout == "AUDIT-FAILED\n"
    assert not (tmp_path / "root" / "lock").exists()


def test_an_audit_line_already_there_is_not_appended_again(tmp_path):
    root = str(tmp_path / "root")
    for line in ('{"a": 1}', '{"a": 1}', '{"a": 2}', '{"a": 1}'):
        assert _sh(cmd.append_audit(root, line), tmp_path).returncode == 0
    assert (tmp_path / "root" / "audit.log").read_text() == '{"a": 1}\n{"a": 2}\n'
