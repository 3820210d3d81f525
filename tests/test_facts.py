"""Parsers for what the host prints, on output captured from a real Docker engine and kernel."""

from pathlib import Path

from sparkkit.host.commands import SECTION
from sparkkit.host.facts import (parse_cat_files, parse_containers, parse_df_free_bytes, parse_listening_ports,
                            parse_lock, parse_preflight)

FIXTURES = Path(__file__).parent / "fixtures"


def test_parse_containers_from_docker_inspect():
    by = {c.service: c for c in parse_containers((FIXTURES / "docker-inspect-compose.json").read_text())}
    web, crashy = by["web"], by["crashy"]
    assert web.status == "running" and web.health == "healthy" and web.ready
    assert web.host_ports == (9911,) and web.image == "sparkkit-rehearsal-app:latest"
    assert web.started_at is not None and web.started_at.tzinfo is not None
    assert crashy.status == "exited" and crashy.exit_code == 1 and not crashy.ready
    assert crashy.health == "" and crashy.restarts == 0 and not crashy.oom_killed


def test_parse_containers_empty():
    assert parse_containers("[]") == ()
    assert parse_containers("") == ()


def test_listening_ports_tcp_and_tcp6():
    ports = parse_listening_ports((FIXTURES / "proc-net-tcp.txt").read_text())
    assert ports == {0x07E8, 0x08AE, 8080}  # 2024, 2222 and 8080 listen; 0x92B6 is an established socket


def test_df_free_bytes():
    assert parse_df_free_bytes("/dev/vda  264212084 23420292  82970620  23% /") == 82970620 * 1024
    assert parse_df_free_bytes("garbage") is None


def _sections(**parts):
    return "\n".join(f"{SECTION.format(k)}\n{v}" for k, v in parts.items())


def test_preflight_sections():
    inspect = (FIXTURES / "docker-inspect-compose.json").read_text()
    text = _sections(docker="20.10.24+dfsg1", compose="2.40.3", runtimes='{"io.containerd.runc.v2":{},"runc":{}}',
                     disk="/dev/vda 264212084 23420292 82970620 23% /",
                     ports=(FIXTURES / "proc-net-tcp.txt").read_text(),
                     images="present sparkkit-rehearsal-app:latest\nmissing ollama/ollama:latest",
                     current="releases/rabc123", releases="rabc123\nr0ld", containers=inspect, end="",
                     audit='{"action": "deploy", "result": "ok", "release": "r0ld"}\nnot json\n'
                           '{"action": "deploy", "result": "failed", "release": "rbad"}\n'
                           '{"action": "rollback", "result": "ok", "release": "rabc123"}')
    facts = parse_preflight(text)
    assert facts.docker_version == "20.10.24+dfsg1" and facts.compose_version == "2.40.3"
    assert facts.runtimes == ("io.containerd.runc.v2", "runc")
    assert facts.images_missing == {"ollama/ollama:latest"}
    assert facts.images_present == {"sparkkit-rehearsal-app:latest"}
    assert facts.current_release == "rabc123" and facts.releases == ("rabc123", "r0ld")
    assert len(facts.containers) == 2 and 8080 in facts.listening_ports
    assert facts.activations == ("r0ld", "rabc123")  # failed deploys and bad lines are not activations


def test_preflight_without_docker():
    text = _sections(docker="Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\nERROR",
                     compose="docker: 'compose' is not a docker command.\nERROR", runtimes="{}", disk="",
                     ports="", images="", current="", releases="", containers="[]", end="")
    facts = parse_preflight(text)
    assert facts.docker_version is None and "Cannot connect" in facts.docker_error
    assert facts.compose_version is None and facts.current_release is None and facts.releases == ()


def test_parse_lock():
    assert parse_lock("ACQUIRED\n") == (True, {})
    held, holder = parse_lock('HELD\n{"who": "a@b", "since": "t"}\n')
    assert not held and holder["who"] == "a@b"
    assert parse_lock("HELD\nnot json")[1] == {"raw": "not json"}


def test_parse_cat_files():
    text = "==sparkkit:file:a.txt==\naGVsbG8K\n==sparkkit:file:b==\n!missing\n"
    assert parse_cat_files(text) == {"a.txt": b"hello\n", "b": None}


def test_parse_hashed_up():
    from sparkkit.host.facts import parse_hashed_up

    text = _sections(hashes="svc-a 63948bf5\nsvc-b c50cd225\n", images="app:1 sha256:657be038\n")
    assert parse_hashed_up(text) == ({"svc-a": "63948bf5", "svc-b": "c50cd225"}, {"app:1": "sha256:657be038"})
    assert parse_hashed_up("") == ({}, {})  # compose printed nothing: every service counts as changed
