"""Load one host's variables from the inventory into precedence-ordered layers, as ansible-core
does (the rules are in ``hostvars.py``; the sources are read by ``sources.py``):

1. group ``all`` inline, then the host's other groups inline (by depth, ``ansible_group_priority``, name)
2. ``group_vars/all``, then ``group_vars/<group>`` in the same order
3. the host inline, then ``host_vars/<host>``
4. the command line ``-e key.path=value`` (value parsed as YAML)

Mappings merge key by key (Ansible's ``hash_behaviour = merge``; its default replaces them), lists
and scalars are replaced; role defaults sit under all of it (``build.py``). Jinja2 in values is
evaluated with the host's variables (``template.py``); ``HostLayers.origin`` names the file that
set a key and ``where`` its line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from sparkkit.errors import InputError
from sparkkit.inventory.hostvars import (Node, Origin, VarsFiles, fold, host_node, host_pieces, plain, sorted_groups,
                                         track)
from sparkkit.inventory.graph import Inventory, Piece
from sparkkit.inventory.sources import load_inventory
from sparkkit.inventory.yamltext import yaml_error
from sparkkit.inventory.template import HostVarsView, LazyVars, evaluate

CLI_SOURCE = "command line -e"


@dataclass(frozen=True, kw_only=True)
class Layer:
    source: str  # path shown to the user, relative to the project
    data: dict


@dataclass(frozen=True, kw_only=True)
class HostLayers:
    host: str
    groups: tuple[str, ...]
    layers: tuple[Layer, ...]  # lowest precedence first; role defaults are separate
    project_dir: Path
    node: Node | None = None  # the merged variables as written, each with its origin (default: the layers merged)
    values: dict | None = None  # the merged variables, templates evaluated
    helpers: frozenset[str] = frozenset()  # top-level variables that templates read
    failures: tuple[tuple[str, InputError], ...] = ()  # top-level keys whose templates cannot be evaluated

    def __post_init__(self):
        if self.node is None:
            root = Origin(f"inventory (host {self.host})", "inventory")
            pieces = [track(Piece(data=layer.data, source=layer.source, file=layer.source)) for layer in self.layers]
            object.__setattr__(self, "node", Node(fold(pieces, root).value, root))

    def check(self, ignore: frozenset[str] = frozenset()) -> None:
        """Raise the first value that could not be evaluated, except under the keys in ``ignore``."""
        for key, error in self.failures:
            if key not in ignore:
                raise error

    def merged(self) -> dict:
        return copy.deepcopy(self.values if self.values is not None else plain(self.node))

    def defines(self, path: tuple[str, ...]) -> bool:
        return any(has_path(layer.data, path) for layer in self.layers)

    def origin(self, path: tuple[str, ...]) -> str:
        """The file that set ``path``; for a missing key, the file that set its nearest parent."""
        return self.where(path).source

    def where(self, path: tuple[str, ...]) -> Origin:
        """The origin (file, place, line) of ``path``, or of its nearest parent that is set."""
        node = self.node
        for part in path:
            if not isinstance(node.value, dict) or part not in node.value:
                break
            node = node.value[part]
        return node.origin


def deep_merge(low: dict, high: dict) -> dict:
    """Merge ``high`` over ``low``: mappings merge recursively, everything else is replaced."""
    out = copy.deepcopy(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def has_path(data: Any, path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def load_yaml_file(path: Path, display: str, *, required: bool = True) -> dict:
    """Read one YAML mapping; every failure is an InputError naming the file."""
    if not path.exists():
        if required:
            raise InputError("file not found", source=display)
        return {}
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (byte {exc.start})", source=display) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=display) from None
    return parse_yaml_mapping(text, display)


def parse_yaml_mapping(text: str, display: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, display) from None
    except RecursionError:
        raise InputError("YAML nested too deeply", source=display) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping at the top, got {type(data).__name__}", source=display)
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise InputError(f"keys must be strings, got {bad[0]!r}", source=display)
    return data


def parse_override(text: str) -> dict:
    """``a.b.c=value`` -> {"a": {"b": {"c": value}}}; the value is parsed as YAML, except that only
    ``true``/``false`` become booleans (``on``, ``yes``, ``no`` stay strings)."""
    key, sep, raw = text.partition("=")
    parts = key.split(".")
    if not sep or not key or any(not p for p in parts):
        raise InputError(f"expected key.path=value, got {text!r}", source=CLI_SOURCE)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        value = raw  # YAML 1.1 reads on/off/yes/no as booleans; on the command line they stay text
    for part in reversed(parts):
        value = {part: value}
    return value


def load_project_inventory(project_dir: Path, sources=()) -> Inventory:
    project_dir = Path(project_dir)
    if not sources and not (project_dir / "inventory").exists():
        raise InputError(f"no inventory/ under {project_dir.resolve()} (use --project-dir)")
    return load_inventory(project_dir, [Path(s) for s in sources])


def all_hosts(project_dir: Path, sources=()) -> list[str]:
    return sorted(load_project_inventory(project_dir, sources).hosts)


def group_members(project_dir: Path, sources=()) -> dict[str, list[str]]:
    """Every group (``all`` and ``ungrouped`` included) -> its hosts, its children's hosts too, in
    the order they are written (a fleet runs in this order)."""
    inv = load_project_inventory(project_dir, sources)
    return {name: inv.hosts_in_file_order(name) for name in inv.groups}


def magic_vars(inv: Inventory, host: str) -> dict:
    return {
        "inventory_hostname": host,
        "inventory_hostname_short": host.split(".")[0],
        "group_names": sorted(g for g in inv.host_groups(host) if g != "all"),
        "groups": {name: inv.group_hosts(name) for name in inv.groups},
    }


def host_raw(inv: Inventory, files: VarsFiles, host: str, overrides: list[str] = ()) -> Node:
    extra = [Piece(data=parse_override(text), source=CLI_SOURCE, file=CLI_SOURCE) for text in overrides]
    return host_node(inv, files, host, extra)


def load_host_layers(project_dir: Path, host: str, overrides: list[str] = (), sources=()) -> HostLayers:
    project_dir = Path(project_dir)
    inv = load_project_inventory(project_dir, sources)
    if host not in inv.hosts:
        known = ", ".join(sorted(inv.hosts)) or "none"
        where = ", ".join(inv.display(s) for s in inv.sources)
        if where == "inventory" and (project_dir / "inventory" / "hosts.yml").exists():
            where = "inventory/hosts.yml"
        raise InputError(f"host {host!r} is not in the inventory (known hosts: {known})", source=where)
    files = VarsFiles(inv)
    node = host_raw(inv, files, host, overrides)
    pieces = host_pieces(inv, files, host)
    pieces += [Piece(data=parse_override(text), source=CLI_SOURCE, file=CLI_SOURCE) for text in overrides]

    def lazy_host(name: str) -> LazyVars:
        return LazyVars(plain(host_raw(inv, files, name)), {**magic_vars(inv, name), "hostvars": view})

    view = HostVarsView(list(inv.hosts), lazy_host)
    groups = tuple(g for g in sorted_groups(inv, inv.host_groups(host)) if g != "all")
    layers = HostLayers(host=host, groups=groups, layers=tuple(Layer(source=p.source, data=p.data) for p in pieces),
                        project_dir=project_dir, node=node)
    values, used, failures = evaluate(plain(node), {**magic_vars(inv, host), "hostvars": view}, layers.origin)
    return replace(layers, values=values, helpers=frozenset(used), failures=tuple(failures.items()))


def load_role_defaults(project_dir: Path, role: str) -> Layer:
    display = f"roles/{role}/defaults/main.yml"
    path = Path(project_dir) / "roles" / role / "defaults" / "main.yml"
    if not path.parent.parent.is_dir():
        raise InputError(f"role {role!r} not found (no roles/{role}/)", source=display)
    return Layer(source=display, data=load_yaml_file(path, display, required=False))
