"""Inventory sources read as ansible-core reads them, into one ``Inventory`` (``graph.py``): YAML
files, INI files (``ini.py``) and directories of them (files in name order; ``group_vars``,
``host_vars``, hidden files and Ansible's ignored extensions skipped). Which parser reads a file
follows Ansible's yaml and ini plugins: ``.yml``/``.yaml``/``.json`` are YAML, a name without an
extension is YAML when it reads as a YAML mapping and INI otherwise, any other name INI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sparkkit.errors import InputError
from sparkkit.inventory.graph import Inventory, Piece, hosts_of_pattern
from sparkkit.inventory.ini import parse_ini
from sparkkit.inventory.yamltext import Lines, load_text, read_text

IGNORED_NAMES = {"host_vars", "group_vars", "vars_plugins"}
IGNORED_ENDINGS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")
YAML_ENDINGS = (".yml", ".yaml", ".json")


def _yaml_group(inv: Inventory, name: Any, data: Any, src: str, lines: Lines, path: tuple[str, ...]) -> str:
    where = ".".join(path)
    group = inv.add_group(name, source=src, key=".".join(path[:-1])).name
    # Where Ansible warns and skips (a group that is not a mapping, a key other than hosts, children
    # and vars), the kit refuses: a typo there would otherwise drop hosts or values silently.
    if not isinstance(data, (dict, type(None))):
        raise InputError(f"expected a mapping, got {type(data).__name__}", source=src, key=where)
    data = dict(data or {})
    unknown = set(data) - {"hosts", "children", "vars"}
    if unknown:
        raise InputError(f"unknown key {sorted(map(str, unknown))[0]!r} (expected hosts, children, vars)",
                         source=src, key=where)
    for section in ("vars", "children", "hosts"):
        if isinstance(data.get(section), str):
            data[section] = {data[section]: None}
        if not isinstance(data.get(section), (dict, type(None))):
            what = {"vars": "a mapping", "children": "a mapping of groups", "hosts": "a mapping of host names"}
            raise InputError(f"expected {what[section]}", source=src, key=f"{where}.{section}")
    for key, value in data.items():
        if value is None:
            continue
        sub = path + (str(key),)
        if key == "vars":
            inner = {k[len(sub):]: n for k, n in lines.items() if k[:len(sub)] == sub and len(k) > len(sub)}
            inv.set_group_vars(group, Piece(data=value, source=f"{src} ({group}.vars)", file=src, lines=inner))
        elif key == "children":
            for child, child_data in value.items():
                inv.add_child(group, _yaml_group(inv, child, child_data, src, lines, sub + (str(child),)))
        elif key == "hosts":
            for pattern, host_data in value.items():
                hkey = sub + (str(pattern),)
                names, port = hosts_of_pattern(pattern, source=src, key=".".join(sub))
                host_data = host_data or {}
                if not isinstance(host_data, dict):
                    raise InputError("expected a mapping", source=src, key=".".join(hkey))
                inner = {k[len(hkey):]: n for k, n in lines.items() if k[:len(hkey)] == hkey and len(k) > len(hkey)}
                for host in names:
                    inv.add_host(host, group, port, source=src, key=".".join(sub))
                    if host_data:
                        inv.hosts[host].pieces.append(
                            Piece(data=host_data, source=f"{src} (host {host})", file=src, lines=inner))
    return group


def parse_yaml_inventory(inv: Inventory, data: dict, src: str, lines: Lines) -> None:
    if data.get("plugin"):
        raise InputError("an inventory plugin's configuration, not an inventory (plugins are not run)", source=src)
    for name, group_data in data.items():
        _yaml_group(inv, name, group_data, src, lines, (str(name),))


def parse_file(inv: Inventory, path: Path) -> None:
    """One file, by its name as Ansible's yaml and ini plugins choose: ``.yml``/``.yaml``/``.json``
    are YAML; a name without extension is YAML when it reads as a YAML mapping, else INI; others INI."""
    src = inv.display(path)
    text = read_text(path, src)
    ext = path.suffix if path.suffix and not path.name.startswith(".") else ""
    if ext in YAML_ENDINGS or not ext:
        try:
            data, lines = load_text(text, src)
        except InputError:
            if ext:
                raise
            data, lines = None, {}
        if isinstance(data, dict) and data:
            parse_yaml_inventory(inv, data, src, lines)
            return
        if ext:
            raise InputError("expected a YAML inventory (a mapping of groups)", source=src)
    parse_ini(inv, text, src)


def parse_source(inv: Inventory, path: Path) -> None:
    if path.is_dir():
        for name in sorted(os.listdir(path)):
            if name.startswith(".") or name in IGNORED_NAMES or name.endswith(IGNORED_ENDINGS):
                continue
            parse_source(inv, path / name)
    elif path.is_file():
        parse_file(inv, path)
    else:
        raise InputError("inventory source not found", source=inv.display(path))


def load_inventory(project_dir: Path, sources: list[Path] | tuple[Path, ...] = ()) -> Inventory:
    """Read every source (default: the project's ``inventory/`` folder) into one Inventory."""
    project_dir = Path(project_dir)
    inv = Inventory(project_dir)
    for source in sources or (project_dir / "inventory",):
        source = Path(source)
        inv.sources.append(source)
        parse_source(inv, source)
    inv.reconcile()
    return inv
