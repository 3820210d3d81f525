"""ansible-core as the test oracle (a test dependency only): what ``ansible-inventory --list`` and
``--host`` print for some sources, and each host's values as Ansible's templar evaluates them, run
in this process through ansible-core's Python API (``InventoryManager`` + ``VariableManager``)
with ``ANSIBLE_HASH_BEHAVIOUR=merge``, so the kit's one documented difference does not count.
Also: the kit's own ``sparkkit inventory`` run the same way, through its command line."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from unittest import mock

os.environ["ANSIBLE_HASH_BEHAVIOUR"] = "merge"  # read when ansible.constants is first imported

from ansible import constants as C  # noqa: E402
from ansible._internal._json._profiles import _inventory_legacy  # noqa: E402
from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.plugins.vars import host_group_vars  # noqa: E402
from ansible.template import Templar  # noqa: E402
from ansible.vars.manager import VariableManager  # noqa: E402

from sparkkit.cli import main as cli_main  # noqa: E402
from sparkkit.inventory.export import jsonable  # noqa: E402
from sparkkit.inventory.layers import load_host_layers  # noqa: E402

assert C.DEFAULT_HASH_BEHAVIOUR == "merge"


def _json(value):
    return json.loads(json.dumps(value, cls=_inventory_legacy.Encoder, sort_keys=True))


def ansible_inventory(sources: list[Path]) -> dict:
    """{"list": what --list prints, "host": {name: what --host prints}, "evaluated": {name: values}}."""
    host_group_vars.FOUND.clear()
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(s) for s in sources])
    vm = VariableManager(loader=loader, inventory=inv)
    raw_vars, evaluated = {}, {}
    for host in inv.get_hosts():
        raw = vm.get_vars(host=host, include_hostvars=False, stage="all")
        raw_vars[host.name] = {k: v for k, v in raw.items() if k not in C.INTERNAL_STATIC_VARS}
        templar = Templar(loader=loader, variables=vm.get_vars(host=host, include_hostvars=True))
        evaluated[host.name] = _json({k: templar.template(v) for k, v in raw_vars[host.name].items()})
    # encoded as the command encodes them: --host one host's mapping, --list the whole structure
    hosts = {name: _json(v) for name, v in raw_vars.items()}
    return {"list": _json(_list(inv, raw_vars)), "host": hosts, "evaluated": evaluated}


def _list(inv, hostvars: dict) -> dict:
    """``InventoryCLI.json_inventory`` for the group ``all``, on ansible-core's own objects."""
    seen: set[str] = set()
    available = {h.name for h in inv.get_hosts("all")}

    def format_group(group) -> dict:
        entry: dict = {}
        if group.name != "all":
            entry["hosts"] = [h.name for h in group.hosts if h.name in available]
        entry["children"] = []
        results = {group.name: entry}
        for sub in group.child_groups:
            entry["children"].append(sub.name)
            if sub.name not in seen:
                results.update(format_group(sub))
                seen.add(sub.name)
        for key in ("hosts", "vars", "children"):
            if key in entry and not entry[key]:
                del entry[key]
        if not entry:
            del results[group.name]
        return results

    results = format_group(inv.groups["all"])
    results["_meta"] = {"hostvars": {h: v for h, v in hostvars.items() if v},
                        "profile": _inventory_legacy.Encoder.profile_name}
    return results


_PARSER: list = []


def sparkkit(args: list[str]) -> tuple[int, str, str]:
    """The command in this process. Its argument parser is built once: building it is half the time
    of a run (argparse's gettext look-ups), and every run here passes --project-dir."""
    if not _PARSER:
        _PARSER.append(cli_main.build_parser())
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(cli_main, "build_parser", lambda: _PARSER[0]), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main.main(args)
    return code, out.getvalue(), err.getvalue()


def sparkkit_inventory(project: Path, sources: list[Path]) -> dict:
    """The same three views from the kit: ``sparkkit inventory --list``, ``--host`` per host, and the
    values a deploy uses (templates evaluated)."""
    source_args = [a for s in sources for a in ("-i", str(s))]
    code, out, err = sparkkit(["inventory", "--list", "--project-dir", str(project), *source_args])
    assert code == 0, err
    listed = json.loads(out)
    hosts, evaluated = {}, {}
    for name in listed["_meta"]["hostvars"].keys() | _all_hosts(listed):
        code, out, err = sparkkit(["inventory", "--host", name, "--project-dir", str(project), *source_args])
        assert code == 0, err
        hosts[name] = json.loads(out)
        evaluated[name] = jsonable(load_host_layers(project, name, [], sources).merged(), mark_unsafe=False)
    return {"list": listed, "host": hosts, "evaluated": evaluated}


def _all_hosts(listed: dict) -> set[str]:
    return {h for name, g in listed.items() if name != "_meta" for h in g.get("hosts", [])}


def files_text(root: Path) -> str:
    """Every file under ``root`` with its content, for a failure message."""
    parts = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts.append(f"--- {path.relative_to(root)}\n{path.read_text()}")
    return "\n".join(parts)


def differences(project: Path, sources: list[Path]) -> list[str]:
    """Every way the kit's views differ from ansible-core's (empty: none)."""
    theirs = ansible_inventory(sources)
    ours = sparkkit_inventory(project, sources)
    out = []
    for view in ("list", "host", "evaluated"):
        if ours[view] != theirs[view]:
            out.append(f"{view}:\n  sparkkit: {json.dumps(ours[view], sort_keys=True)}\n"
                       f"  ansible:  {json.dumps(theirs[view], sort_keys=True)}")
    return out
