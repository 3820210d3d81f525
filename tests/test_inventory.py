"""Inventory precedence, end to end through ``load_host_layers`` and ``build_config``.

Precedence, lowest first: role defaults < group all < groups (outer before inner) < host < ``-e``.
Each test builds a small self-contained project in ``tmp_path`` (the real ``roles/`` and
``templates/`` plus an inventory written here).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkkit.inventory.build import build_config
from sparkkit.errors import InputError
from sparkkit.inventory.layers import CLI_SOURCE, load_host_layers

from tests import projects

REPO = Path(__file__).resolve().parents[1]

# A minimal valid inventory: host `box` in group `gpus`, one searxng service.
BASE_FILES = {
    "inventory/hosts.yml": """
        all:
          children:
            gpus:
              hosts:
                box:
                  ansible_host: box.example
                other:
                  ansible_host: other.example
    """,
    "inventory/group_vars/all.yml": """
        required_headroom_gib: 4.0
        services:
          search:
            role: searxng
    """,
    "inventory/group_vars/gpus.yml": """
        gpu: true
        host_memory_gib: 64.0
    """,
    "inventory/host_vars/box.yml": """
        ansible_user: deploy
    """,
}


def make_project(tmp_path: Path, overlay: dict[str, str] | None = None,
                 replace: dict[str, str | bytes | None] | None = None) -> Path:
    return projects.make_project(tmp_path, BASE_FILES, overlay, replace)


def config_for(proj: Path, host: str = "box", extra: list[str] = ()):
    layers = load_host_layers(proj, host, list(extra))
    return layers, build_config(layers)


def test_base_inventory_is_valid(tmp_path):
    layers, cfg = config_for(make_project(tmp_path))
    assert cfg.name == "box"
    assert cfg.groups == ("gpus",)
    assert cfg.ssh.address == "box.example"
    assert cfg.ssh.user == "deploy"
    assert [s.name for s in cfg.services] == ["search"]
    # Defaults from code and from the role.
    assert cfg.keep_releases == 5
    assert cfg.service("search").start_timeout_s == 120
    assert cfg.service("search").port == 8080
    assert [layer.source for layer in layers.layers] == [
        "inventory/group_vars/all.yml",
        "inventory/group_vars/gpus.yml",
        "inventory/hosts.yml (host box)",
        "inventory/host_vars/box.yml",
    ]


# --- each level wins over the one before ------------------------------------------------------

LEVELS = ["role", "all", "group", "host", "cli"]


def _levels_project(tmp_path, upto: str, key_text: str, values: dict[str, str]):
    """Set ``key_text`` (a YAML fragment with {v}) at every level up to ``upto``."""
    overlay: dict[str, str] = {}
    extra: list[str] = []
    files = {"all": "inventory/group_vars/all.yml", "group": "inventory/group_vars/gpus.yml",
             "host": "inventory/host_vars/box.yml"}
    for level in LEVELS[1:LEVELS.index(upto) + 1]:
        if level == "cli":
            extra.append(values["cli"])
        else:
            overlay[files[level]] = key_text.format(v=values[level])
    return make_project(tmp_path, overlay), extra


@pytest.mark.parametrize("upto, expected, source", [
    ("role", 120, None),
    ("all", 201, "inventory/group_vars/all.yml"),
    ("group", 302, "inventory/group_vars/gpus.yml"),
    ("host", 403, "inventory/host_vars/box.yml"),
    ("cli", 504, CLI_SOURCE),
])
def test_service_value_precedence(tmp_path, upto, expected, source):
    proj, extra = _levels_project(
        tmp_path, upto, "services: {{search: {{start_timeout_s: {v}}}}}",
        {"all": "201", "group": "302", "host": "403", "cli": "services.search.start_timeout_s=504"})
    layers, cfg = config_for(proj, extra=extra)
    assert cfg.service("search").start_timeout_s == expected
    merged = layers.merged()
    if source is None:  # role defaults are applied by build_config, not by the layers
        assert "start_timeout_s" not in merged["services"]["search"]
    else:
        assert merged["services"]["search"]["start_timeout_s"] == expected
        assert layers.origin(("services", "search", "start_timeout_s")) == source


@pytest.mark.parametrize("upto, expected", [
    ("role", 5),  # not in any role: the code default
    ("all", 3),
    ("group", 4),
    ("host", 6),
    ("cli", 7),
])
def test_top_level_value_precedence(tmp_path, upto, expected):
    proj, extra = _levels_project(tmp_path, upto, "keep_releases: {v}",
                                  {"all": "3", "group": "4", "host": "6", "cli": "keep_releases=7"})
    layers, cfg = config_for(proj, extra=extra)
    assert cfg.keep_releases == expected
    assert layers.merged().get("keep_releases", 5) == expected


@pytest.mark.parametrize("upto, expected", [
    ("role", "8080"),
    ("all", "all"),
    ("group", "group"),
    ("host", "host"),
    ("cli", "cli"),
])
def test_env_value_precedence(tmp_path, upto, expected):
    proj, extra = _levels_project(
        tmp_path, upto, "services: {{search: {{env: {{SEARXNG_PORT: '{v}'}}}}}}",
        {"all": "all", "group": "group", "host": "host", "cli": "services.search.env.SEARXNG_PORT=cli"})
    _, cfg = config_for(proj, extra=extra)
    assert dict(cfg.service("search").env)["SEARXNG_PORT"] == expected


def test_mappings_merge_key_by_key(tmp_path):
    proj = make_project(tmp_path, {
        "inventory/group_vars/all.yml": "services: {search: {env: {FROM_ALL: a, SHARED: all}}}",
        "inventory/group_vars/gpus.yml": "services: {search: {env: {FROM_GROUP: g, SHARED: group}}}",
        "inventory/host_vars/box.yml": "services: {search: {env: {FROM_HOST: h}}}",
    })
    _, cfg = config_for(proj, extra=["services.search.env.FROM_CLI=c"])
    env = dict(cfg.service("search").env)
    assert env == {
        "SEARXNG_PORT": "8080",  # role default kept
        "FROM_ALL": "a",
        "FROM_GROUP": "g",
        "SHARED": "group",
        "FROM_HOST": "h",
        "FROM_CLI": "c",
    }
    # Sibling keys of a service survive a host-level change to one of them.
    svc = cfg.service("search")
    assert svc.role == "searxng"
    assert svc.healthcheck is not None and svc.healthcheck.interval_s == 10


def test_nested_mapping_merge_keeps_role_healthcheck_keys(tmp_path):
    proj = make_project(tmp_path, {"inventory/host_vars/box.yml": "services: {search: {healthcheck: {interval_s: 1}}}"})
    _, cfg = config_for(proj)
    hc = cfg.service("search").healthcheck
    assert hc.interval_s == 1
    assert hc.retries == 3 and hc.start_period_s == 30  # from the role defaults
    assert hc.test[:2] == ("CMD", "python3")


def test_lists_are_replaced_not_appended(tmp_path):
    proj = make_project(tmp_path, {
        "inventory/group_vars/all.yml": "services: {search: {crash_signatures: [from-all], volumes: [a:/a]}}",
        "inventory/group_vars/gpus.yml": "services: {search: {crash_signatures: [from-group]}}",
        "inventory/host_vars/box.yml": "services: {search: {volumes: []}}",
    })
    layers, cfg = config_for(proj)
    svc = cfg.service("search")
    assert svc.crash_signatures == ("from-group",)  # not the role's two, not all's
    assert svc.volumes == ()
    assert layers.merged()["services"]["search"]["crash_signatures"] == ["from-group"]


def test_list_replaced_by_cli(tmp_path):
    _, cfg = config_for(make_project(tmp_path), extra=["services.search.crash_signatures=[boom, bang]"])
    assert cfg.service("search").crash_signatures == ("boom", "bang")


def test_nested_groups_apply_outer_before_inner(tmp_path):
    # Names chosen so that alphabetical order would give the wrong answer.
    proj = make_project(tmp_path, replace={
        "inventory/hosts.yml": """
            all:
              children:
                zouter:
                  children:
                    ainner:
                      hosts:
                        box:
                          ansible_host: box.example
        """,
        "inventory/group_vars/zouter.yml": "keep_releases: 3\nhost_memory_gib: 32.0\ngpu: false\n",
        "inventory/group_vars/ainner.yml": "keep_releases: 4\n",
        "inventory/group_vars/gpus.yml": None,
    })
    layers, cfg = config_for(proj)
    assert cfg.groups == ("zouter", "ainner")
    assert cfg.keep_releases == 4
    assert cfg.host_memory_gib == 32.0  # set only by the outer group, still applies
    assert cfg.gpu is False
    assert [layer.source for layer in layers.layers] == [
        "inventory/group_vars/all.yml",
        "inventory/group_vars/zouter.yml",
        "inventory/group_vars/ainner.yml",
        "inventory/hosts.yml (host box)",
        "inventory/host_vars/box.yml",
    ]


def test_host_vars_still_win_over_inner_group(tmp_path):
    proj = make_project(tmp_path, replace={
        "inventory/hosts.yml": """
            all:
              children:
                outer:
                  children:
                    inner:
                      hosts:
                        box: {ansible_host: box.example}
        """,
        "inventory/group_vars/outer.yml": "gpu: true\nhost_memory_gib: 64.0\nkeep_releases: 3\n",
        "inventory/group_vars/inner.yml": "keep_releases: 4\n",
        "inventory/host_vars/box.yml": "keep_releases: 9\n",
    })
    _, cfg = config_for(proj)
    assert cfg.keep_releases == 9


def test_sibling_groups_apply_by_name(tmp_path):
    proj = make_project(tmp_path, replace={
        "inventory/hosts.yml": """
            all:
              children:
                beta:
                  hosts:
                    box: {ansible_host: box.example}
                alpha:
                  hosts:
                    box:
        """,
        "inventory/group_vars/alpha.yml": "gpu: true\nhost_memory_gib: 64.0\nkeep_releases: 3\n",
        "inventory/group_vars/beta.yml": "keep_releases: 4\n",
    })
    _, cfg = config_for(proj)
    assert cfg.groups == ("alpha", "beta")
    assert cfg.keep_releases == 4
    assert cfg.ssh.address == "box.example"


def test_inline_vars_in_hosts_yml(tmp_path):
    proj = make_project(tmp_path, replace={
        "inventory/hosts.yml": """
            all:
              vars:
                keep_releases: 3
                compose_project: from-all-inline
                sparkkit_root: /srv/inline
              children:
                gpus:
                  vars:
                    keep_releases: 4
                    bind_address: 10.0.0.1
                  hosts:
                    box:
                      ansible_host: box.example
                      ansible_port: 2200
                      keep_releases: 6
        """,
    }, overlay={
        # group_vars/all.yml wins over all.vars; hosts.yml group vars lose to group_vars/gpus.yml
        "inventory/group_vars/all.yml": "compose_project: from-all-file",
        "inventory/group_vars/gpus.yml": "bind_address: 10.0.0.2",
    })
    layers, cfg = config_for(proj)
    assert cfg.ssh.port == 2200
    assert cfg.root == "/srv/inline"  # only set inline, in all.vars
    assert cfg.project == "from-all-file"
    assert cfg.bind_address == "10.0.0.2"
    assert cfg.keep_releases == 6  # inline host var beats both groups
    assert layers.origin(("ansible_port",)) == "inventory/hosts.yml (host box)"
    assert layers.origin(("sparkkit_root",)) == "inventory/hosts.yml (all.vars)"
    assert layers.origin(("keep_releases",)) == "inventory/hosts.yml (host box)"


def test_host_vars_file_beats_inline_host_vars(tmp_path):
    proj = make_project(tmp_path, replace={
        "inventory/hosts.yml": """
            all:
              children:
                gpus:
                  hosts:
                    box:
                      ansible_host: inline.example
                      keep_releases: 6
        """,
    }, overlay={"inventory/host_vars/box.yml": "ansible_host: file.example"})
    layers, cfg = config_for(proj)
    assert cfg.ssh.address == "file.example"
    assert cfg.keep_releases == 6
    assert layers.origin(("ansible_host",)) == "inventory/host_vars/box.yml"


def test_cli_values_are_parsed_as_yaml(tmp_path):
    proj = make_project(tmp_path)
    layers, cfg = config_for(proj, extra=[
        "keep_releases=7",
        "services.search.env.X=hello",
        "services.search.env.N=42",
        "services.search.enabled=true",
        "required_headroom_gib=2.5",
        "services.search.command=[a, b]",
    ])
    assert cfg.keep_releases == 7 and isinstance(cfg.keep_releases, int)
    env = dict(cfg.service("search").env)
    assert env["X"] == "hello"
    assert env["N"] == "42"  # rendered as text for the container env
    assert layers.merged()["services"]["search"]["env"]["N"] == 42
    assert cfg.required_headroom_gib == 2.5
    assert cfg.service("search").command == ("a", "b")
    assert layers.layers[-1].source == CLI_SOURCE
    assert layers.merged()["keep_releases"] == 7


def test_cli_value_with_equals_sign_and_empty_value(tmp_path):
    layers, _ = config_for(make_project(tmp_path), extra=["services.search.env.Q=a=b", "services.search.env.E="])
    env = layers.merged()["services"]["search"]["env"]
    assert env["Q"] == "a=b"
    assert env["E"] == ""


def test_later_cli_override_wins(tmp_path):
    _, cfg = config_for(make_project(tmp_path), extra=["keep_releases=7", "keep_releases=8"])
    assert cfg.keep_releases == 8


def test_cli_can_disable_a_service(tmp_path):
    proj = make_project(tmp_path, {"inventory/group_vars/all.yml": """
        services:
          llm: {role: vllm, model: m/m, port: 8100, memory_gib: 10.0}
    """})
    _, cfg = config_for(proj, extra=["services.llm.enabled=false"])
    assert [s.name for s in cfg.services] == ["search"]
    assert cfg.disabled == ("llm",)


def test_unknown_host_lists_known_hosts(tmp_path):
    proj = make_project(tmp_path)
    with pytest.raises(InputError) as info:
        load_host_layers(proj, "nope")
    assert str(info.value) == (
        "inventory/hosts.yml: host 'nope' is not in the inventory (known hosts: box, other)")


def test_missing_host_vars_file_is_fine(tmp_path):
    proj = make_project(tmp_path)
    _, cfg = config_for(proj, host="other")
    assert cfg.ssh.address == "other.example"
    assert cfg.ssh.user is None


# --- the real project inventory -----------------------------------------------------------------

@pytest.mark.parametrize("host", ["spark", "rehearsal"])
def test_real_inventory_builds(host):
    cfg = build_config(load_host_layers(REPO, host))
    assert cfg.name == host
    names = {s.name for s in cfg.services}
    assert names == {"vllm-annie", "vllm-nemotron", "ollama", "searxng", "context-engine", "audio-pipeline"}
    assert cfg.service("vllm-nemotron").depends_on == ("vllm-annie",)
    assert sum(s.memory_gib for s in cfg.services) + cfg.required_headroom_gib <= cfg.host_memory_gib


def test_real_inventory_hosts_differ_as_intended():
    spark = build_config(load_host_layers(REPO, "spark"))
    rehearsal = build_config(load_host_layers(REPO, "rehearsal"))
    assert spark.groups == ("sparks",) and rehearsal.groups == ("rehearsal_hosts",)
    assert spark.gpu is True and rehearsal.gpu is False
    assert spark.host_memory_gib == 121.7 and rehearsal.host_memory_gib == 16.0
    assert spark.ssh.address == "spark.local" and spark.ssh.port == 22
    assert rehearsal.ssh.address == "127.0.0.1" and rehearsal.ssh.port == 2222
    assert rehearsal.root == "/var/lib/sparkkit-rehearsal" and spark.root == "/opt/sparkkit"
    assert rehearsal.service("vllm-nemotron").image == "sparkkit-rehearsal-vllm:latest"
    assert rehearsal.service("vllm-nemotron").volumes == ()
    # the rehearsal host renders the same flags as the Spark
    assert rehearsal.service("vllm-nemotron").flags == spark.service("vllm-nemotron").flags


def test_real_inventory_spark_nemotron():
    cfg = build_config(load_host_layers(REPO, "spark"))
    svc = cfg.service("vllm-nemotron")
    flags = dict(svc.flags)
    assert flags["enforce-eager"] is True
    assert flags["gpu-memory-utilization"] == 0.35
    assert flags["tool-call-parser"] == "qwen3_coder"
    assert flags["reasoning-parser"] == "nano_v3"
    assert "load-format" not in flags
    assert not any("load-format" in part for part in svc.argv())
    assert dict(svc.env)["VLLM_FLASHINFER_MOE_BACKEND"] == "latency"
    assert svc.depends_on == ("vllm-annie",)
    assert "vllm-annie" in {s.name for s in cfg.services}
    assert svc.port == 8004 and svc.memory_gib == 27.0
    assert svc.image == "nvcr.io/nvidia/vllm:25.12.post1-py3"
    assert svc.role_vars["model"] == "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4"
    argv = svc.argv()
    assert "--enforce-eager" in argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.35"


def test_command_line_keeps_yaml_1_1_words_as_text():
    from sparkkit.inventory.layers import parse_override

    assert parse_override("a.b=on") == {"a": {"b": "on"}}
    assert parse_override("a.b=no") == {"a": {"b": "no"}}
    assert parse_override("a.b=true") == {"a": {"b": True}}
    assert parse_override("a.b=False") == {"a": {"b": False}}
    assert parse_override("a=[1, 2]") == {"a": [1, 2]}
