"""The bad-input corpus, through the command line: every malformed inventory, template, suite file
and secrets file exits 2 with a message naming the file (and the key where there is one), opens no
SSH connection and writes nothing — neither in the project nor on any host.

The inventory cases of test_config_errors run here again through ``sparkkit deploy``; the cases
below add templates, suite files, secrets files, shell metacharacters, newlines, huge values and
non-UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import sparkkit.host.ssh
from sparkkit.cli.main import main

from tests.test_config_errors import ALL, CASES as INVENTORY_CASES, HOST, make_project

COMPOSE = "templates/docker-compose.yml.j2"
SERVICE = "templates/_service.j2"
SETTINGS = "roles/searxng/templates/files/settings.yml.j2"
SUITE = "suites/mine.yaml"
SECRETS = "secrets.yml"

GOOD_SUITE = """\
suite: mine
kind: chat
runs: 1
cases:
  - id: hello
    prompt: Say hello.
"""


def case(id, command, expected, *, overlay=None, replace=None, extra=(), secrets_mode=None):
    """``expected``: substrings the error message must hold (the file first, then the key)."""
    return pytest.param(command, overlay or {}, replace or {}, list(extra), expected, secrets_mode, id=id)


def suite(text: str) -> dict:
    return {SUITE: text}


CASES = [
    # --- templates ----------------------------------------------------------------------------
    case("template-undefined-variable", "deploy", [COMPOSE, "undefined variable", "nope"],
         replace={COMPOSE: "services: {{ nope }}\n"}),
    case("template-undefined-attribute", "deploy", [COMPOSE, "undefined variable", "no_such_field"],
         replace={COMPOSE: "services: {{ host.no_such_field }}\n"}),
    case("template-syntax-error", "render", [COMPOSE, "template syntax error at line 2"],
         replace={COMPOSE: "services:\n{% if %}\n"}),
    case("template-unclosed-block", "deploy", [COMPOSE, "template syntax error"],
         replace={COMPOSE: "services:\n{% for s in services %}\n  x: 1\n"}),
    case("template-includes-a-missing-file", "deploy", [COMPOSE, "template not found", "nope.j2"],
         replace={COMPOSE: "{% include 'nope.j2' %}\n"}),
    case("template-non-utf8", "deploy", [COMPOSE, "UTF-8"],
         replace={COMPOSE: b"services: \xff\xfe\n"}),
    case("template-renders-invalid-yaml", "deploy", [COMPOSE, "not valid YAML"],
         replace={COMPOSE: "services: [\n"}),
    case("template-renders-no-services", "deploy", [COMPOSE, "has no services"],
         replace={COMPOSE: "volumes: {}\n"}),
    case("service-partial-undefined-variable", "deploy", [SERVICE, "undefined variable", "svc_typo"],
         replace={SERVICE: "  {{ svc_typo.name }}:\n    image: x\n"}),
    case("role-file-template-undefined-variable", "deploy", [SETTINGS, "undefined variable", "missing_key"],
         replace={SETTINGS: "server:\n  bind_address: {{ missing_key }}\n"}),
    case("role-file-template-syntax-error", "deploy", [SETTINGS, "template syntax error"],
         replace={SETTINGS: "server: {{ svc.port \n"}),
    case("role-file-template-non-utf8", "deploy", [SETTINGS, "UTF-8"],
         replace={SETTINGS: b"server:\n  name: \xc3\x28\n"}),
    # --- suite files (read by deploy-and-verify and verify before anything is opened) ------------
    case("suite-yaml-syntax-error", "deploy-and-verify", [SUITE, "YAML syntax error: line"],
         replace=suite("suite: mine\nkind: chat\ncases: [\n")),
    case("suite-not-a-mapping", "deploy-and-verify", [SUITE, "expected a mapping"],
         replace=suite("- suite: mine\n")),
    case("suite-without-name", "verify", [SUITE, "suite", "missing value"],
         replace=suite("kind: chat\ncases: [{id: a, prompt: b}]\n")),
    case("suite-unknown-kind", "deploy-and-verify", [SUITE, "kind", "expected one of"],
         replace=suite("suite: mine\nkind: chatty\ncases: [{id: a, prompt: b}]\n")),
    case("suite-cases-not-a-list", "deploy-and-verify", [SUITE, "cases", "non-empty list"],
         replace=suite("suite: mine\nkind: chat\ncases: {id: a}\n")),
    case("suite-case-without-id", "deploy-and-verify", [SUITE, "cases.0", "needs an id"],
         replace=suite("suite: mine\nkind: chat\ncases: [{prompt: b}]\n")),
    case("suite-duplicate-case-id", "deploy-and-verify", [SUITE, "cases.1.id", "duplicate id 'a'"],
         replace=suite("suite: mine\nkind: chat\ncases: [{id: a, prompt: b}, {id: a, prompt: c}]\n")),
    case("suite-chat-case-without-prompt", "deploy-and-verify", [SUITE, "cases.0.prompt", "missing prompt"],
         replace=suite("suite: mine\nkind: chat\ncases: [{id: a, prompt: 3}]\n")),
    case("suite-negative-runs", "deploy-and-verify", [SUITE, "runs", "non-negative integer"],
         replace=suite(GOOD_SUITE.replace("runs: 1", "runs: -2"))),
    case("suite-runs-is-a-string", "deploy-and-verify", [SUITE, "runs", "non-negative integer"],
         replace=suite(GOOD_SUITE.replace("runs: 1", "runs: many"))),
    case("suite-unknown-key-typo", "deploy-and-verify", [SUITE, "warmpus", "unknown key"],
         replace=suite(GOOD_SUITE + "warmpus: 2\n")),
    case("suite-unknown-case-key", "deploy-and-verify", [SUITE, "cases.0.promt", "unknown key"],
         replace=suite("suite: mine\nkind: chat\ncases: [{id: a, prompt: b, promt: c}]\n")),
    case("suite-tools-without-tool-list", "deploy-and-verify", [SUITE, "tools", "list of tool definitions"],
         replace=suite("suite: mine\nkind: tools\ncases: [{id: a, prompt: b}]\n")),
    case("suite-extraction-without-transcript", "deploy-and-verify", [SUITE, "cases.0.transcript"],
         replace=suite("suite: mine\nkind: extraction\ncases: [{id: a}]\n")),
    case("suite-conversation-without-turns", "deploy-and-verify", [SUITE, "user_turns"],
         replace=suite("suite: mine\nkind: conversation\nconversations: [{id: a}]\n")),
    case("suite-non-utf8", "deploy-and-verify", [SUITE, "UTF-8"],
         replace={SUITE: b"suite: mine\nkind: chat\n# \xff\n"}),
    case("suite-huge-runs", "deploy-and-verify", [SUITE, "runs", "at most"],
         replace=suite(GOOD_SUITE.replace("runs: 1", "runs: 100000000000"))),
    # --- values with shell metacharacters, newlines, huge values -------------------------------
    case("compose-project-with-shell-metacharacters", "deploy", [HOST, "compose_project"],
         overlay={HOST: "compose_project: 'x; rm -rf /'"}),
    case("sparkkit-root-with-command-substitution", "deploy", [HOST, "sparkkit_root"],
         overlay={HOST: "sparkkit_root: '/srv/$(reboot)'"}),
    case("sparkkit-root-with-newline", "deploy", [HOST, "sparkkit_root"],
         overlay={HOST: "sparkkit_root: \"/srv/a\\nb\""}),
    case("ansible-user-with-newline", "deploy", [HOST, "ansible_user"],
         overlay={HOST: "ansible_user: \"deploy\\nroot\""}),
    case("image-with-newline", "deploy", [HOST, "services.llm.image"],
         overlay={HOST: "services: {llm: {image: \"img:1\\nprivileged: true\"}}"}),
    case("env-value-with-newline", "deploy", [HOST, "services.llm.env.A"],
         overlay={HOST: "services: {llm: {env: {A: \"x\\nB=injected\"}}}"}),
    case("flag-name-with-shell-metacharacters", "deploy", [HOST, "services.llm.flags"],
         overlay={HOST: "services: {llm: {flags: {'x; reboot': 1}}}"}),
    case("huge-port-number", "deploy", [HOST, "services.llm.port"],
         overlay={HOST: "services: {llm: {port: 100000000000000000000}}"}),
    case("huge-string-value", "deploy", [HOST, "services.llm.model", "too long"],
         overlay={HOST: "services: {llm: {model: '" + "m" * 20000 + "'}}"}),
    case("huge-memory-value", "deploy", [HOST, "services.llm.memory_gib"],
         overlay={HOST: "services: {llm: {memory_gib: 1.0e300}}"}),
    case("nan-memory-value", "deploy", [HOST, "services.llm.memory_gib"],
         overlay={HOST: "services: {llm: {memory_gib: .nan}}"}),
    case("keep-releases-huge-from-cli", "deploy", ["command line -e", "keep_releases"],
         extra=["keep_releases=99999999999999999999"]),
    case("extra-var-with-newline-in-key", "deploy", ["command line -e"],
         extra=["services.llm\nport=1"]),
    case("inventory-non-utf8-hosts", "deploy", ["inventory/hosts.yml", "UTF-8"],
         replace={"inventory/hosts.yml": b"all:\n  hosts: {box: {ansible_host: \xe9}}\n"}),
    case("inventory-yaml-alias-bomb", "deploy", [ALL, "a", "unknown key"],
         replace={ALL: "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nrequired_headroom_gib: 4.0\n"
                       "services: {search: {role: searxng}, llm: {role: vllm, model: m, port: 8100, memory_gib: 1.0}}\n"}),
    case("inventory-python-object-tag", "deploy", [ALL, "YAML"],
         replace={ALL: "keep_releases: !!python/object/apply:os.system ['true']\n"}),
    # --- secrets ------------------------------------------------------------------------------
    case("secrets-file-world-readable", "deploy", [SECRETS, "mode 0600"],
         overlay={HOST: f"secrets_file: {SECRETS}"}, secrets_mode=0o644),
    case("secrets-file-not-yaml", "deploy", [SECRETS, "YAML syntax error"],
         overlay={HOST: f"secrets_file: {SECRETS}"}, replace={SECRETS: "searxng_secret: [\n"},
         secrets_mode=0o600),
    case("secrets-file-non-utf8", "deploy", [SECRETS, "UTF-8"],
         overlay={HOST: f"secrets_file: {SECRETS}"}, replace={SECRETS: b"searxng_secret: \xff\n"},
         secrets_mode=0o600),
    case("secret-value-with-newline", "deploy", [SECRETS, "searxng_secret", "single-line"],
         overlay={HOST: f"secrets_file: {SECRETS}"}, replace={SECRETS: "searxng_secret: \"a\\nb\"\n"},
         secrets_mode=0o600),
    case("secret-value-not-a-string", "deploy", [SECRETS, "searxng_secret"],
         overlay={HOST: f"secrets_file: {SECRETS}"}, replace={SECRETS: "searxng_secret: [1, 2]\n"},
         secrets_mode=0o600),
    case("secret-missing", "deploy", [SECRETS, "searxng_secret", "is not set"],
         overlay={HOST: f"secrets_file: {SECRETS}"}, replace={SECRETS: "other: x\n"}, secrets_mode=0o600),
]


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_ssh(monkeypatch):
    """Any attempt to open an SSH connection is recorded and fails the command."""
    attempts = []

    def refuse(self):
        attempts.append(self.host_name)
        raise AssertionError("an SSH connection was attempted")

    monkeypatch.setattr(sparkkit.host.ssh.SshExecutor, "_connect", refuse)
    return attempts


def run_bad(tmp_path, capsys, no_ssh, monkeypatch, command, overlay, replace, extra, secrets_mode):
    proj = make_project(tmp_path, overlay, replace)
    if secrets_mode is not None:
        path = proj / SECRETS
        if not path.exists():
            path.write_text("searxng_secret: s3cr3t-value\n")
        path.chmod(secrets_mode)
        monkeypatch.delenv("SPARKKIT_SECRET_SEARXNG_SECRET", raising=False)
    else:
        monkeypatch.setenv("SPARKKIT_SECRET_SEARXNG_SECRET", "s3cr3t-value")
    before = tree_digest(proj)
    argv = [command, "box", "--project-dir", str(proj), *sum((["-e", e] for e in extra), [])]
    if command == "render":
        argv += ["--out", str(tmp_path / "out")]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}\n{out}\n{err}"
    assert no_ssh == []
    assert tree_digest(proj) == before, "the project folder was changed"
    assert not (tmp_path / "out").exists() and not (proj / "reports").exists()
    assert out == ""
    assert err.startswith("error: ") and len(err) < 2000, err
    assert "s3cr3t-value" not in err
    return err


@pytest.mark.parametrize("command, overlay, replace, extra, expected, secrets_mode", CASES)
def test_bad_input_exits_2_names_the_place_and_touches_nothing(tmp_path, capsys, no_ssh, monkeypatch, command,
                                                               overlay, replace, extra, expected, secrets_mode):
    err = run_bad(tmp_path, capsys, no_ssh, monkeypatch, command, overlay, replace, extra, secrets_mode)
    for part in expected:
        assert part in err, f"{part!r} not in {err!r}"
    assert err.index(expected[0]) <= err.index(expected[-1]), "the file comes first"


@pytest.mark.parametrize("overlay, replace, extra, expected, exact", INVENTORY_CASES)
def test_inventory_corpus_through_deploy(tmp_path, capsys, no_ssh, monkeypatch, overlay, replace, extra,
                                         expected, exact):
    err = run_bad(tmp_path, capsys, no_ssh, monkeypatch, "deploy", overlay, replace, extra, None)
    assert expected in err


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 50
    assert len(CASES) + len(INVENTORY_CASES) >= 90
    assert len({p.id for p in CASES}) == len(CASES)


def test_a_good_project_gets_as_far_as_connecting(tmp_path, capsys, no_ssh, monkeypatch):
    """The counterpart: the same project without the fault passes validation and tries to connect."""
    proj = make_project(tmp_path, replace=suite(GOOD_SUITE))
    monkeypatch.setenv("SPARKKIT_SECRET_SEARXNG_SECRET", "s3cr3t-value")
    with pytest.raises(AssertionError, match="SSH connection was attempted"):
        main(["deploy-and-verify", "box", "--project-dir", str(proj)])
    assert no_ssh == ["box"]
    assert os.environ["SPARKKIT_SECRET_SEARXNG_SECRET"] == "s3cr3t-value"


def test_a_bug_in_the_kit_is_one_line_and_exit_1_not_a_traceback(monkeypatch, capsys):
    """The `sparkkit` command (``entry``) turns an unexpected exception into one line naming its type
    and where it was raised, never its text (which could hold an unmasked value); SPARKKIT_DEBUG=1
    lets the traceback through."""
    import sparkkit.cli.main as cli

    def buggy():
        raise RuntimeError("a value that must not be printed: s3cr3t")

    monkeypatch.setattr(cli, "main", buggy)
    monkeypatch.delenv("SPARKKIT_DEBUG", raising=False)
    assert cli.entry() == 1
    err = capsys.readouterr().err
    assert err.startswith("FAILED: unexpected RuntimeError at test_bad_input.py:") and "SPARKKIT_DEBUG=1" in err
    assert "s3cr3t" not in err and "Traceback" not in err and len(err.splitlines()) == 1
    monkeypatch.setenv("SPARKKIT_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.entry()
