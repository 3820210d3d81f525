"""``sparkkit inventory`` (--list, --host, --explain) and what reading inventories as Ansible does
means for a deploy: Jinja2 values evaluated (or refused with the file and key), ``!unsafe`` kept,
ranges, INI files and vars folders, helper variables that templates use."""

from __future__ import annotations

import json

import pytest

from sparkkit.cli.main import main
from sparkkit.errors import InputError
from sparkkit.inventory.build import build_config
from sparkkit.inventory.layers import load_host_layers
from tests.test_inventory import make_project


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_host_prints_the_merged_variables_as_written(tmp_path, capsys):
    proj = make_project(tmp_path, {"inventory/group_vars/gpus.yml": "note: '{{ inventory_hostname }}'"})
    code, out, err = run(capsys, "inventory", "--host", "box", "--project-dir", str(proj))
    assert code == 0, err
    data = json.loads(out)
    assert data["ansible_host"] == "box.example" and data["ansible_user"] == "deploy"
    assert data["note"] == "{{ inventory_hostname }}"  # as ansible-inventory prints it: not evaluated
    assert out == json.dumps(data, sort_keys=True, indent=4) + "\n"


def test_list_has_groups_and_every_hosts_variables(tmp_path, capsys):
    code, out, err = run(capsys, "inventory", "--list", "--project-dir", str(make_project(tmp_path)))
    assert code == 0, err
    data = json.loads(out)
    assert data["all"] == {"children": ["ungrouped", "gpus"]}
    assert data["gpus"] == {"hosts": ["box", "other"]}
    assert set(data["_meta"]["hostvars"]) == {"box", "other"}
    assert data["_meta"]["profile"] == "inventory_legacy"


def test_explain_names_file_and_line_and_what_was_overridden(tmp_path, capsys):
    proj = make_project(tmp_path, replace={
        "inventory/hosts.yml": """
            all:
              vars:
                keep_releases: 3
              children:
                gpus:
                  hosts:
                    box:
                      ansible_host: box.example
                      keep_releases: 4
        """,
        "inventory/host_vars/box.yml": "ansible_user: deploy\nkeep_releases: '{{ 2 + 4 }}'\n",
    })
    code, out, err = run(capsys, "inventory", "--host", "box", "--explain", "keep_releases", "--project-dir", str(proj))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == 'keep_releases = "{{ 2 + 4 }}" -> 6    from inventory/host_vars/box.yml:2'
    assert lines[1] == "    overrides 4 from inventory/hosts.yml:10 (host box)"
    assert lines[2] == "    overrides 3 from inventory/hosts.yml:4 (all.vars)"
    code, out, err = run(capsys, "inventory", "--host", "box", "--explain", "services.search", "--project-dir", str(proj))
    assert out.splitlines() == ['services.search.role = "searxng"    from inventory/group_vars/all.yml:4']


def test_explain_of_a_missing_key_is_bad_input(tmp_path, capsys):
    code, _, err = run(capsys, "inventory", "--host", "box", "--explain", "nope.x", "--project-dir",
                       str(make_project(tmp_path)))
    assert code == 2 and "has no variable 'nope.x'" in err


@pytest.mark.parametrize("command", [["inventory", "--list"], ["render", "box"]])
def test_a_bad_ini_line_is_exit_2_naming_file_and_line(tmp_path, capsys, command):
    proj = make_project(tmp_path, replace={"inventory/hosts.yml": None,
                                           "inventory/hosts.ini": "[gpus]\nbox ansible_host=b\nother novalue\n"})
    code, _, err = run(capsys, *command, "--project-dir", str(proj))
    assert code == 2
    assert "inventory/hosts.ini:3: expected key=value host variable assignment, got: novalue" in err


@pytest.mark.parametrize("value, message", [
    ("'{{ nope }}'", "'nope' is undefined"),
    ("'{{ 1 | no_such_filter }}'", "No filter named 'no_such_filter'"),
    ("'{{ 1 +'", "unexpected 'end of template'"),
])
def test_a_value_that_cannot_be_evaluated_is_refused(tmp_path, capsys, value, message):
    proj = make_project(tmp_path, {"inventory/group_vars/all.yml": f"services: {{search: {{env: {{X: {value}}}}}}}"})
    code, _, err = run(capsys, "render", "box", "--project-dir", str(proj))
    assert code == 2
    assert err.startswith("error: inventory/group_vars/all.yml: services.search.env.X: cannot evaluate")
    assert message in err


def test_variables_in_a_loop_are_refused(tmp_path):
    proj = make_project(tmp_path, {"inventory/host_vars/box.yml": "a: '{{ b }}'\nb: '{{ a }}'\nkeep_releases: '{{ a }}'"})
    with pytest.raises(InputError, match="in a loop"):
        build_config(load_host_layers(proj, "box"))


def test_templates_reach_the_deploy_with_their_types(tmp_path):
    proj = make_project(tmp_path, {
        "inventory/group_vars/all.yml": """
            base_port: 8000
            services:
              search:
                port: "{{ base_port + 80 }}"
                env: {WHO: "{{ inventory_hostname }}-{{ group_names | join(',') }}",
                      DFLT: "{{ unset | default('d') }}"}
        """})
    cfg = build_config(load_host_layers(proj, "box"))
    svc = cfg.service("search")
    assert svc.port == 8080
    env = dict(svc.env)
    assert env["WHO"] == "box-gpus" and env["DFLT"] == "d"


def test_unsafe_text_is_kept_as_written(tmp_path, capsys):
    proj = make_project(tmp_path, replace={"inventory/host_vars/box.yml":
                                           "ansible_user: deploy\nservices:\n  search:\n    env:\n"
                                           "      RAW: !unsafe '{{ not evaluated }}'\n"})
    cfg = build_config(load_host_layers(proj, "box"))
    assert dict(cfg.service("search").env)["RAW"] == "{{ not evaluated }}"
    code, _, err = run(capsys, "render", "box", "--out", str(tmp_path / "out"), "--project-dir", str(proj))
    assert code == 0, err
    compose = next((tmp_path / "out").rglob("docker-compose.yml")).read_text()
    assert '"RAW": "{{ not evaluated }}"' in compose


def test_an_unused_unknown_variable_is_still_refused(tmp_path):
    proj = make_project(tmp_path, {"inventory/group_vars/all.yml": "base_port: 8000"})
    with pytest.raises(InputError, match="base_port: unknown key"):
        build_config(load_host_layers(proj, "box"))


def test_ranges_ini_and_vars_folders_in_a_deploy(tmp_path):
    proj = make_project(tmp_path, replace={
        "inventory/hosts.yml": None,
        "inventory/group_vars/gpus.yml": None,
        "inventory/hosts": "[gpus]\nspark[01:03] ansible_host=10.0.0.9\n[gpus:vars]\nkeep_releases=3\n",
        "inventory/group_vars/gpus/10-hw.yml": "gpu: true\nhost_memory_gib: 64.0\n",
        "inventory/group_vars/gpus/20-more.yaml": "keep_releases: 4\n",
    })
    cfg = build_config(load_host_layers(proj, "spark02"))
    assert cfg.name == "spark02" and cfg.groups == ("gpus",)
    assert cfg.gpu is True and cfg.keep_releases == 4  # group_vars over the inline [gpus:vars]
    assert cfg.ssh.address == "10.0.0.9"


def test_templates_run_in_jinja2s_sandbox(tmp_path, capsys):
    proj = make_project(tmp_path, {"inventory/group_vars/all.yml":
                                   "services: {search: {env: {X: \"{{ ''.__class__.__mro__ }}\"}}}"})
    code, _, err = run(capsys, "render", "box", "--project-dir", str(proj))
    assert code == 2
    assert "services.search.env.X: cannot evaluate" in err and "unsafe" in err


def test_hostvars_and_groups_reach_other_hosts_values(tmp_path, capsys):
    proj = make_project(tmp_path, replace={
        "inventory/hosts.ini": "[gpus]\nbox ansible_host=box.example\nother ansible_host=10.1.1.1 keep_releases=7\n",
        "inventory/hosts.yml": None,
    }, overlay={"inventory/host_vars/box.yml":
                "keep_releases: \"{{ hostvars[groups['gpus'][1]]['keep_releases'] - 1 }}\""})
    cfg = build_config(load_host_layers(proj, "box"))
    assert cfg.keep_releases == 6
    code, out, err = run(capsys, "inventory", "--host", "box", "--explain", "keep_releases", "--project-dir", str(proj))
    assert code == 0, err
    assert out.startswith('keep_releases = "{{ hostvars[groups[\'gpus\'][1]][\'keep_releases\'] - 1 }}" -> 6')


def test_several_sources_on_the_command_line(tmp_path, capsys):
    proj = make_project(tmp_path)
    extra = tmp_path / "extra.ini"
    extra.write_text("[gpus]\nbox keep_releases=9\nnewbox ansible_host=n.example\n")
    code, out, err = run(capsys, "inventory", "--list", "--project-dir", str(proj),
                         "-i", str(proj / "inventory"), "-i", str(extra))
    assert code == 0, err
    data = json.loads(out)
    assert data["gpus"]["hosts"] == ["box", "other", "newbox"]
    assert data["_meta"]["hostvars"]["box"]["keep_releases"] == 9
    cfg = build_config(load_host_layers(proj, "box", sources=[proj / "inventory", extra]))
    assert cfg.keep_releases == 9 and cfg.ssh.user == "deploy"


def test_a_failing_template_never_shows_the_values_text(tmp_path, capsys):
    secretish = "hunter2-{{ 1 + }}"  # a value that could be a password with braces in it
    proj = make_project(tmp_path, {"inventory/group_vars/all.yml": "services: {search: {env: {PW: \"%s\"}}}" % secretish})
    code, _, err = run(capsys, "render", "box", "--project-dir", str(proj))
    assert code == 2 and "services.search.env.PW: cannot evaluate its template" in err
    assert "hunter2" not in err


def test_a_broken_template_still_prints_and_is_explained(tmp_path, capsys):
    """As ansible-inventory, --host prints values as written; --explain says why one cannot be evaluated."""
    proj = make_project(tmp_path, {"inventory/host_vars/box.yml": "keep_releases: '{{ nope + 1 }}'"})
    code, out, err = run(capsys, "inventory", "--host", "box", "--project-dir", str(proj))
    assert code == 0, err
    assert json.loads(out)["keep_releases"] == "{{ nope + 1 }}"
    code, out, err = run(capsys, "inventory", "--host", "box", "--explain", "keep_releases", "--project-dir", str(proj))
    assert code == 0, err
    assert out.splitlines()[0] == ('keep_releases = "{{ nope + 1 }}" -> cannot evaluate its template: '
                                   "'nope' is undefined    from inventory/host_vars/box.yml:2")
    code, _, err = run(capsys, "render", "box", "--project-dir", str(proj))
    assert code == 2 and "inventory/host_vars/box.yml: keep_releases: cannot evaluate its template" in err
