"""The differential test on generated inventories: hypothesis writes random group trees (a group
under one or several parents, at any depth), hosts and host ranges, variables at every level
(inline for ``all``, groups and hosts; ``group_vars``/``host_vars`` as files with each extension
or as folders of files), ``ansible_group_priority``, templates that use other variables, in YAML
or INI, as one file or as a folder of two; then ``sparkkit inventory --list``/``--host`` and the
evaluated values must equal ansible-core's for every host. A difference fails with the inventory."""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ansible", reason="ansible-core is a test dependency: pip install -e '.[test]'")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.ansible_oracle import differences, files_text  # noqa: E402

EXAMPLES = 100  # per format: 300 inventories in all, in three tests that can run side by side
GROUPS = ["g0", "g1", "g2", "g3", "g4", "g5"]
HOSTS = ["h0", "h1", "h2", "h3"]
RANGES = ["r[1:3]", "r[01:10:4]", "n[a:c]", "m[0:1][x:y]"]
NAMES = ["a", "b", "c", "m"]  # variable names; base_* are set in all.vars and read by templates
TEMPLATES = ["{{ base_n }}", "{{ base_n + 1 }}", "x-{{ base_s }}", "{{ inventory_hostname }}",
             "{{ missing | default('dflt') }}", "{{ group_names | length }}", "{{ base_m }}"]

class Unsafe(str):
    """Written as ``!unsafe`` in YAML files (INI has no such tag: plain text there)."""


class Dumper(yaml.SafeDumper):
    pass


Dumper.add_representer(Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v)))


def dump(data) -> str:
    return yaml.dump(data, Dumper=Dumper, sort_keys=False)


scalars = st.one_of(st.integers(-5, 99), st.sampled_from(["s", "t", "two words", "1.5", "yes", "a#b"]),
                    st.booleans(), st.none(), st.sampled_from(TEMPLATES), st.sampled_from(TEMPLATES).map(Unsafe))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["x", "y", "z"]), inner, max_size=2)),
    max_leaves=4)
var_maps = st.dictionaries(st.sampled_from(NAMES), values, max_size=3)


@st.composite
def inventories(draw, fmt: str | None = None) -> dict:
    groups = draw(st.lists(st.sampled_from(GROUPS), min_size=1, max_size=5, unique=True))
    parents = {}
    for i, g in enumerate(groups):  # parents come earlier in the list: no loops
        parents[g] = draw(st.lists(st.sampled_from(groups[:i]), max_size=2, unique=True)) if i else []
    members = {g: draw(st.lists(st.sampled_from(HOSTS + RANGES), max_size=3, unique=True)) for g in groups}
    loose = draw(st.lists(st.sampled_from(HOSTS + RANGES), max_size=2, unique=True))
    # a host's variables as written where it appears: under each of its groups, or loose
    host_vars = {(g, h): draw(var_maps) for g in [*groups, None] for h in HOSTS + RANGES}
    return {
        "format": fmt or draw(st.sampled_from(["yaml", "ini", "both"])),
        "groups": groups, "parents": parents, "members": members, "loose": loose,
        "group_vars": {g: draw(var_maps) for g in groups}, "all_vars": draw(var_maps),
        "priority": {g: draw(st.sampled_from([None, 0, 1, 5])) for g in groups},
        "host_vars": host_vars,
        "gv_files": {g: (draw(st.sampled_from(["", ".yml", ".yaml", ".json", "dir"])), draw(var_maps))
                     for g in ["all", *groups] if draw(st.booleans())},
        "hv_files": {h: (draw(st.sampled_from(["", ".yml", ".json", "dir"])), draw(var_maps))
                     for h in HOSTS if draw(st.booleans())},
    }


BASE = {"base_n": 3, "base_s": "s", "base_m": {"k": 1}}


def yaml_text(inv: dict, groups: list[str]) -> str:
    def group_body(g: str) -> dict:
        body: dict = {}
        gvars = dict(inv["group_vars"][g])
        if inv["priority"][g] is not None:
            gvars["ansible_group_priority"] = inv["priority"][g]
        if gvars:
            body["vars"] = gvars
        if inv["members"][g]:
            body["hosts"] = {h: (inv["host_vars"][g, h] or None) for h in inv["members"][g]}
        kids = [k for k in groups if g in inv["parents"][k]]
        if kids:
            body["children"] = {k: (group_body(k) if inv["parents"][k][0] == g else None) for k in kids}
        return body

    top = {"all": {"vars": {**BASE, **inv["all_vars"]}}}
    if inv["loose"]:
        top["all"]["hosts"] = {h: (inv["host_vars"][None, h] or None) for h in inv["loose"]}
    for g in groups:
        if not inv["parents"][g]:
            top[g] = group_body(g) or None
    return dump(top)


def ini_value(value) -> str:
    return repr(plain(value))


def plain(value):
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def ini_text(inv: dict, groups: list[str], with_base: bool) -> str:
    lines = [" ".join([h] + [shlex.quote(f"{k}={ini_value(v)}") for k, v in inv["host_vars"][None, h].items()])
             for h in inv["loose"]]
    all_vars = {**(BASE if with_base else {}), **inv["all_vars"]}
    if all_vars:
        lines += ["[all:vars]"] + [f"{k} = {ini_value(v)}" for k, v in all_vars.items()]
    for g in groups:
        lines.append(f"[{g}]")
        for h in inv["members"][g]:
            lines.append(" ".join([h] + [shlex.quote(f"{k}={ini_value(v)}")
                                         for k, v in inv["host_vars"][g, h].items()]))
        gvars = dict(inv["group_vars"][g])
        if inv["priority"][g] is not None:
            gvars["ansible_group_priority"] = inv["priority"][g]
        if gvars:
            lines += [f"[{g}:vars]"] + [f"{k} = {ini_value(v)}" for k, v in gvars.items()]
        kids = [k for k in groups if g in inv["parents"][k]]
        if kids:
            lines += [f"[{g}:children]"] + kids
    return "\n".join(lines) + "\n"


def write_vars(folder: Path, name: str, ext: str, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if ext == "dir":
        (folder / name).mkdir()
        items = list(data.items())
        (folder / name / "10.yml").write_text(dump(dict(items[::2])))
        (folder / name / "20.json").write_text(json.dumps(dict(items[1::2])))
    elif ext == ".json":
        (folder / f"{name}{ext}").write_text(json.dumps(data))
    else:
        (folder / f"{name}{ext}").write_text(dump(data))


def write_inventory(root: Path, inv: dict) -> list[Path]:
    src = root / "inv"
    src.mkdir(parents=True)
    groups = inv["groups"]
    if inv["format"] == "yaml":
        (src / "hosts.yml").write_text(yaml_text(inv, groups))
        sources = [src / "hosts.yml"]
    elif inv["format"] == "ini":
        (src / "hosts").write_text(ini_text(inv, groups, with_base=True))
        sources = [src / "hosts"]
    else:  # a folder of two sources: the YAML file holds the tree, the INI file more vars and hosts
        (src / "a.yml").write_text(yaml_text(inv, groups))
        roots = [g for g in groups if not inv["parents"][g]]
        extra = {**inv, "loose": inv["loose"][:1], "all_vars": {}, "priority": {g: None for g in groups},
                 "parents": {g: [] for g in groups}}
        (src / "b.ini").write_text(ini_text(extra, roots, with_base=False))
        sources = [src]
    for name, (ext, data) in inv["gv_files"].items():
        write_vars(src / "group_vars", name, ext, data)
    for name, (ext, data) in inv["hv_files"].items():
        write_vars(src / "host_vars", name, ext, data)
    return sources


def check(inv: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = write_inventory(root, inv)
        found = differences(root, sources)
        assert not found, "differs from ansible-core\n" + "\n".join(found) + "\n" + files_text(root)


GENERATED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@GENERATED
@given(inv=inventories("yaml"))
def test_generated_yaml_inventories_read_as_ansible_reads_them(inv):
    check(inv)


@GENERATED
@given(inv=inventories("ini"))
def test_generated_ini_inventories_read_as_ansible_reads_them(inv):
    check(inv)


@GENERATED
@given(inv=inventories("both"))
def test_generated_inventory_folders_read_as_ansible_reads_them(inv):
    check(inv)
