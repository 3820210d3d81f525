"""Malformed inventories: each is refused with an InputError that names the file that set the bad
value and the key path, and the command line turns that into exit code 2 before touching anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkkit.cli.main import main
from sparkkit.inventory.build import build_config
from sparkkit.errors import InputError
from sparkkit.inventory.layers import load_host_layers

from tests import projects

REPO = Path(__file__).resolve().parents[1]

ALL = "inventory/group_vars/all.yml"
GROUP = "inventory/group_vars/gpus.yml"
HOST = "inventory/host_vars/box.yml"
HOSTS = "inventory/hosts.yml"
SEARXNG_DEFAULTS = "roles/searxng/defaults/main.yml"

# A minimal valid inventory: host `box` in group `gpus`, a searxng and a vllm service.
BASE_FILES = {
    HOSTS: """
        all:
          children:
            gpus:
              hosts:
                box:
                  ansible_host: box.example
    """,
    ALL: """
        keep_releases: 5
        required_headroom_gib: 4.0
        services:
          search:
            role: searxng
          llm:
            role: vllm
            model: org/model
            port: 8100
            memory_gib: 10.0
    """,
    GROUP: """
        gpu: true
        host_memory_gib: 64.0
    """,
    HOST: """
        ansible_user: deploy
    """,
    # A role without an image default, so a service of it must set one.
    "roles/bare/defaults/main.yml": """
        port: 9000
        start_timeout_s: 60
        memory_gib: 1.0
    """,
}


def make_project(tmp_path: Path, overlay: dict[str, str] | None = None,
                 replace: dict[str, str | bytes | None] | None = None) -> Path:
    return projects.make_project(tmp_path, BASE_FILES, overlay, replace)


def build(proj: Path, extra: list[str] = (), host: str = "box"):
    return build_config(load_host_layers(proj, host, list(extra)))


def test_base_inventory_is_valid(tmp_path):
    cfg = build(make_project(tmp_path))
    assert [s.name for s in cfg.services] == ["llm", "search"]
    assert cfg.service("llm").port == 8100


def case(id, expected, *, overlay=None, replace=None, extra=(), exact=True):
    return pytest.param(overlay or {}, replace or {}, list(extra), expected, exact, id=id)


CASES = [
    # --- files that do not parse ------------------------------------------------------------
    case("yaml-syntax-error-host-vars",
         f"{HOST}: YAML syntax error: line 3, column 1: expected ',' or ']', but got '<stream end>'",
         replace={HOST: "ansible_user: deploy\nservices: {llm: {port: [8100\n"}),
    case("yaml-syntax-error-bad-indent-group-vars",
         f"{GROUP}: YAML syntax error: line 2, column 18: mapping values are not allowed here",
         replace={GROUP: "gpu: true\n  host_memory_gib: 64.0\n bad: 1\n"}),
    case("top-level-list-instead-of-mapping",
         f"{GROUP}: expected a mapping at the top, got list",
         replace={GROUP: "- gpu: true\n- host_memory_gib: 64.0\n"}),
    case("non-utf8-bytes",
         f"{HOST}: not valid UTF-8 (byte 15)",
         replace={HOST: b"ansible_user: d\xe9ploy\n"}),
    case("host-name-with-a-line-break",
         f"{HOSTS}: all.children.gpus.hosts: not a valid host or group name: 'box\\nx' "
         "(one word of printable characters)",
         replace={HOSTS: 'all:\n  children:\n    gpus:\n      hosts:\n        box: {ansible_host: b}\n'
                         '        "box\\nx": {ansible_host: c}\n'}),
    case("group-name-with-a-space",
         f"{HOSTS}: all.children: not a valid host or group name: 'my gpus' (one word of printable characters)",
         replace={HOSTS: 'all:\n  children:\n    "my gpus":\n      hosts:\n        box: {ansible_host: b}\n'}),
    case("hosts-yml-unknown-group-key",
         f"{HOSTS}: all.children.gpus: unknown key 'host' (expected hosts, children, vars)",
         replace={HOSTS: "all:\n  children:\n    gpus:\n      host:\n        box: {ansible_host: b}\n"}),

    # --- unknown keys --------------------------------------------------------------------------
    case("unknown-top-level-key-in-all",
         f"{ALL}: kep_releases: unknown key (expected one of: ", overlay={ALL: "kep_releases: 3"},
         exact=False),
    case("unknown-service-key-typo-imgae",
         f"{HOST}: services.llm.imgae: unknown key (expected one of: ",
         overlay={HOST: "services: {llm: {imgae: 'vllm/vllm-openai:v1'}}"}, exact=False),
    case("unknown-healthcheck-key",
         f"{GROUP}: services.search.healthcheck.intervall_s: unknown key (expected one of: "
         "interval_s, retries, start_period_s, test, timeout_s)",
         overlay={GROUP: "services: {search: {healthcheck: {intervall_s: 5}}}"}),

    # --- wrong types -------------------------------------------------------------------------
    case("port-not-an-integer",
         f"{HOST}: services.llm.port: expected an integer, got 'abc'",
         overlay={HOST: "services: {llm: {port: abc}}"}),
    case("port-is-a-float",
         f"{ALL}: services.llm.port: expected an integer, got 8100.5",
         overlay={ALL: "services: {llm: {port: 8100.5}}"}),
    case("enabled-is-string-yes",
         f"{HOST}: services.search.enabled: expected true or false, got 'yes'",
         overlay={HOST: "services: {search: {enabled: 'yes'}}"}),
    case("memory-gib-not-a-number",
         f"{ALL}: services.llm.memory_gib: expected a number, got 'lots'",
         overlay={ALL: "services: {llm: {memory_gib: lots}}"}),
    case("flags-is-a-list",
         f"{HOST}: services.llm.flags: expected a mapping, got ['enforce-eager']",
         overlay={HOST: "services: {llm: {flags: [enforce-eager]}}"}),
    case("env-value-is-a-list",
         f"{GROUP}: services.llm.env.FOO: expected a string, number or boolean, got ['a', 'b']",
         overlay={GROUP: "services: {llm: {env: {FOO: [a, b]}}}"}),
    case("command-is-a-string",
         f"{HOST}: services.llm.command: expected a list, got 'vllm serve'",
         overlay={HOST: "services: {llm: {command: vllm serve}}"}),
    case("keep-releases-1-from-cli",
         "command line -e: keep_releases: must be at least 2 (current and previous), got 1",
         extra=["keep_releases=1"]),
    case("keep-releases-not-an-integer-in-all",
         f"{ALL}: keep_releases: expected an integer, got 'five'",
         overlay={ALL: "keep_releases: five"}),
    case("ansible-port-out-of-range",
         f"{HOST}: ansible_port: must be a port number 1-65535, got 70000",
         overlay={HOST: "ansible_port: 70000"}),
    case("ansible-port-not-an-integer-inline-in-hosts-yml",
         f"{HOSTS} (host box): ansible_port: expected an integer, got 'ssh'",
         replace={HOSTS: "all:\n  children:\n    gpus:\n      hosts:\n"
                         "        box: {ansible_host: box.example, ansible_port: ssh}\n"}),
    case("ansible-connection-unknown",
         f"{HOST}: ansible_connection: expected ssh or local, got 'paramiko'",
         overlay={HOST: "ansible_connection: paramiko"}),
    case("ansible-connection-not-a-string-from-cli",
         "command line -e: ansible_connection: expected a string, got True",
         extra=["ansible_connection=true"]),
    case("negative-start-timeout-from-cli",
         "command line -e: services.llm.start_timeout_s: must be greater than 0, got -5",
         extra=["services.llm.start_timeout_s=-5"]),
    case("negative-start-timeout-in-role-defaults",
         f"{SEARXNG_DEFAULTS}: services.search.start_timeout_s: must be greater than 0, got -1",
         overlay={SEARXNG_DEFAULTS: "start_timeout_s: -1"}),
    case("bad-type-in-role-defaults-healthcheck",
         f"{SEARXNG_DEFAULTS}: services.search.healthcheck.retries: expected an integer, got 'many'",
         overlay={SEARXNG_DEFAULTS: "healthcheck: {retries: many}"}),
    case("role-var-wrong-type",
         f"{HOST}: services.search.instance_name: expected a string, got 5",
         overlay={HOST: "services: {search: {instance_name: 5}}"}),
    case("services-not-a-mapping",
         f"{HOST}: services: expected a mapping, got ['search', 'llm']",
         replace={HOST: "services: [search, llm]\n"}),
    case("service-not-a-mapping",
         f"{HOST}: services.llm: expected a mapping, got 'vllm'",
         overlay={HOST: "services: {llm: vllm}"}),

    # --- missing required values ---------------------------------------------------------------
    case("missing-ansible-host",
         ": ansible_host: missing value (a string is required)",
         replace={HOSTS: "all:\n  children:\n    gpus:\n      hosts:\n        box:\n"}, exact=False),
    case("service-without-role",
         f"{HOST}: services.extra.role: missing value (a string is required)",
         overlay={HOST: "services: {extra: {image: 'x:1', port: 9100, start_timeout_s: 5, memory_gib: 1}}"}),
    case("service-without-role-in-all-blames-all",
         f"{ALL}: services.extra.role: missing value (a string is required)",
         overlay={ALL: "services: {extra: {image: 'x:1', port: 9100, start_timeout_s: 5, memory_gib: 1}}",
                  HOST: "services: {llm: {port: 8101}}"}),
    case("unknown-role-names-the-key",
         f"{ALL}: services.other.role: role 'nope' not found (no roles/nope/)",
         overlay={ALL: "services: {other: {role: nope}}"}),
    case("missing-top-level-value-names-the-host",
         "inventory (host box): host_memory_gib: missing value (a number is required)",
         replace={GROUP: "gpu: true\n"}),
    case("duplicate-default-ports-blame-the-role-defaults",
         f"{SEARXNG_DEFAULTS}: services.search2.port: host port 8080 is already used by service 'search'",
         overlay={ALL: "services: {search2: {role: searxng}}"}),
    case("service-without-image",
         f"{HOST}: services.plain.image: missing value (a string is required)",
         overlay={HOST: "services: {plain: {role: bare}}"}),
    case("image-that-docker-would-read-as-an-option",
         f"{HOST}: services.llm.image: not a valid image reference: '--privileged' (it starts with '-')",
         overlay={HOST: "services: {llm: {image: '--privileged'}}"}),
    case("image-with-a-control-character",
         f"{HOST}: services.llm.image: not a valid image reference: 'x\\x1b:1'",
         overlay={HOST: 'services: {llm: {image: "x\\e:1"}}'}),
    case("image-outside-the-reference-grammar",
         f"{HOST}: services.llm.image: not a valid image reference: 'Vllm/vllm:1' (repository names must be "
         "lower-case)", overlay={HOST: "services: {llm: {image: 'Vllm/vllm:1'}}"}),
    case("image-with-an-empty-tag",
         f"{HOST}: services.llm.image: not a valid image reference: 'vllm:' (not in the image reference "
         "grammar ([registry/]name[:tag][@digest]))", overlay={HOST: "services: {llm: {image: 'vllm:'}}"}),
    case("missing-host-memory-gib",
         ": host_memory_gib: missing value (a number is required)",
         replace={GROUP: "gpu: true\n"}, exact=False),

    # --- values that are the right type but not valid -----------------------------------------
    case("duplicate-host-ports",
         f"{HOST}: services.search.port: host port 8100 is already used by service 'llm'",
         overlay={HOST: "services: {search: {port: 8100}}"}),
    case("memory-budget-does-not-fit",
         f"{GROUP}: host_memory_gib: services need 60.5 GiB + 4.0 GiB required headroom = 64.5 GiB, "
         "more than the host's 64.0 GiB",
         overlay={HOST: "services: {llm: {memory_gib: 60.0}}"}),
    case("memory-budget-headroom-from-cli",
         f"{GROUP}: host_memory_gib: services need 10.5 GiB + 60.0 GiB required headroom = 70.5 GiB, "
         "more than the host's 64.0 GiB",
         extra=["required_headroom_gib=60"]),
    case("depends-on-unknown-service",
         f"{HOST}: services.llm.depends_on: 'ghost' is not a service",
         overlay={HOST: "services: {llm: {depends_on: [ghost]}}"}),
    case("depends-on-disabled-service",
         f"{ALL}: services.llm.depends_on: 'search' is disabled",
         overlay={ALL: "services: {llm: {depends_on: [search]}}", HOST: "services: {search: {enabled: false}}"}),
    case("dependency-cycle",
         f"{ALL}: services.llm.depends_on: dependency cycle: llm -> search -> llm",
         overlay={ALL: "services: {llm: {depends_on: [search]}}", HOST: "services: {search: {depends_on: [llm]}}"}),
    case("invalid-service-name",
         f"{HOST}: services.Web Search: service names use a-z, 0-9, '-' and '_' and start with a letter or digit",
         overlay={HOST: "services: {'Web Search': {role: searxng, port: 9200}}"}),
    case("invalid-env-var-name",
         f"{GROUP}: services.llm.env.BAD-NAME: not a valid environment variable name",
         overlay={GROUP: "services: {llm: {env: {BAD-NAME: x}}}"}),
    case("relative-sparkkit-root",
         f"{ALL}: sparkkit_root: must be an absolute path without '..', got 'opt/sparkkit'",
         overlay={ALL: "sparkkit_root: opt/sparkkit"}),
    case("sparkkit-root-with-dotdot",
         "command line -e: sparkkit_root: must be an absolute path without '..', got '/opt/../etc'",
         extra=["sparkkit_root=/opt/../etc"]),
    case("secret-env-invalid-secret-name",
         f"{HOST}: services.llm.secret_env.HF_TOKEN: expected a secret name (a-z, 0-9, _), got 'HF-Token'",
         overlay={HOST: "services: {llm: {secret_env: {HF_TOKEN: HF-Token}}}"}),
    case("hostile-ansible-host",
         f"{HOST}: ansible_host: not a valid host address: '; rm -rf /'",
         overlay={HOST: "ansible_host: '; rm -rf /'"}),
    case("hostile-ansible-host-from-cli",
         "command line -e: ansible_host: not a valid host address: '-oProxyCommand=sh'",
         extra=["ansible_host=-oProxyCommand=sh"]),
    case("cli-override-without-equals",
         "command line -e: expected key.path=value, got 'keep_releases'",
         extra=["keep_releases"]),
    case("cli-override-with-empty-key-part",
         "command line -e: expected key.path=value, got 'services..port=1'",
         extra=["services..port=1"]),
    case("no-enabled-services",
         "command line -e: services: no enabled services",
         extra=["services.llm.enabled=false", "services.search.enabled=false"]),
]


@pytest.mark.parametrize("overlay, replace, extra, expected, exact", CASES)
def test_malformed_inventory_is_refused(tmp_path, overlay, replace, extra, expected, exact):
    proj = make_project(tmp_path, overlay, replace)
    with pytest.raises(InputError) as info:
        build(proj, extra)
    message = str(info.value)
    if exact:
        assert message == expected
    else:
        assert expected in message
    assert "\n" not in message


def test_corpus_is_large_enough():
    assert len(CASES) >= 24
    assert len({p.id for p in CASES}) == len(CASES)


def test_yaml_syntax_error_names_the_line(tmp_path):
    proj = make_project(tmp_path, replace={ALL: "keep_releases: 5\nservices:\n  search:\n    role: [searxng\n\n"})
    with pytest.raises(InputError) as info:
        load_host_layers(proj, "box")
    assert info.value.source == ALL
    assert str(info.value).startswith(f"{ALL}: YAML syntax error: line ")


# --- the command line ---------------------------------------------------------------------------

def test_render_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    proj = make_project(tmp_path, overlay={HOST: "services: {llm: {port: abc}}"})
    out = tmp_path / "out"
    rc = main(["render", "box", "--project-dir", str(proj), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 2
    assert f"{HOST}: services.llm.port: expected an integer, got 'abc'" in captured.err
    assert captured.out == ""
    assert not out.exists() or not any(out.iterdir())


def test_render_refuses_bad_cli_override(tmp_path, capsys):
    proj = make_project(tmp_path)
    out = tmp_path / "out"
    rc = main(["render", "box", "--project-dir", str(proj), "--out", str(out), "-e", "keep_releases=1"])
    assert rc == 2
    assert "command line -e: keep_releases: must be at least 2" in capsys.readouterr().err
    assert not out.exists()


def test_render_of_valid_inventory_writes_files(tmp_path, capsys):
    # The counterpart of the test above: the same command on good input does write.
    proj = make_project(tmp_path)
    out = tmp_path / "out"
    rc = main(["render", "box", "--project-dir", str(proj), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert (out / "docker-compose.yml").is_file()


def test_deploy_with_bad_input_opens_no_ssh_connection(tmp_path, monkeypatch, capsys):
    import sparkkit.host.ssh

    calls = []

    def fake_connect(self):
        calls.append(self)
        raise AssertionError("SSH connection attempted")

    monkeypatch.setattr(sparkkit.host.ssh.SshExecutor, "_connect", fake_connect)
    proj = make_project(tmp_path, overlay={HOST: "ansible_host: '; rm -rf /'"})
    rc = main(["deploy", "box", "--project-dir", str(proj)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{HOST}: ansible_host: not a valid host address" in err
    assert calls == []
