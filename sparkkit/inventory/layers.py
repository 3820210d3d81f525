"""Load an Ansible-style inventory for one host into precedence-ordered layers.

Precedence, lowest first (later layers win; mappings merge key by key, lists are replaced):

1. role defaults      roles/<role>/defaults/main.yml   (applied under services.<name>)
2. group all          hosts.yml ``all.vars``, then inventory/group_vars/all.yml
3. each group         hosts.yml group ``vars``, then inventory/group_vars/<group>.yml
                      (outer groups before inner ones, then by name)
4. the host           hosts.yml inline host vars, then inventory/host_vars/<host>.yml
5. the command line   ``-e key.path=value`` (value parsed as YAML)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sparkkit.errors import InputError

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

    def merged(self) -> dict:
        result: dict = {}
        for layer in self.layers:
            result = deep_merge(result, layer.data)
        return result

    def defines(self, path: tuple[str, ...]) -> bool:
        return any(has_path(layer.data, path) for layer in self.layers)

    def origin(self, path: tuple[str, ...]) -> str:
        """The file that set ``path``; for a missing key, the file that set its nearest parent."""
        for depth in range(len(path), 0, -1):
            for layer in reversed(self.layers):
                if has_path(layer.data, path[:depth]):
                    return layer.source
        return f"inventory (host {self.host})"


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
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"YAML syntax error: {where}{problem}", source=display) from None
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


def _groups_of(tree: dict, host: str, source: str) -> tuple[list[tuple[int, str, dict]], dict | None]:
    """Walk hosts.yml; return the (depth, group, inline vars) chain containing ``host`` and its inline vars."""
    found: list[tuple[int, str, dict]] = []
    host_vars: dict | None = None

    def walk(name: str, node: Any, depth: int, path: str) -> bool:
        nonlocal host_vars
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise InputError(f"expected a mapping, got {type(node).__name__}", source=source, key=path)
        unknown = set(node) - {"hosts", "children", "vars"}
        if unknown:
            raise InputError(f"unknown key {sorted(unknown)[0]!r} (expected hosts, children, vars)",
                             source=source, key=path)
        inline = node.get("vars") or {}
        if not isinstance(inline, dict):
            raise InputError("expected a mapping", source=source, key=f"{path}.vars")
        hit = False
        hosts = node.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise InputError("expected a mapping of host names", source=source, key=f"{path}.hosts")
        for name_in_file in hosts:
            check_name(name_in_file, source=source, key=f"{path}.hosts")
        if host in hosts:
            hvars = hosts[host] or {}
            if not isinstance(hvars, dict):
                raise InputError("expected a mapping", source=source, key=f"{path}.hosts.{host}")
            host_vars = deep_merge(host_vars or {}, hvars)
            hit = True
        children = node.get("children") or {}
        if not isinstance(children, dict):
            raise InputError("expected a mapping of groups", source=source, key=f"{path}.children")
        for child, sub in children.items():
            check_name(child, source=source, key=f"{path}.children")
            if walk(child, sub, depth + 1, f"{path}.children.{child}"):
                hit = True
        if hit:
            found.append((depth, name, inline))
        return hit

    for top, node in tree.items():
        check_name(top, source=source, key="")
        walk(top, node, 0 if top == "all" else 1, top)
    return found, host_vars


def check_name(name: Any, *, source: str, key: str) -> None:
    """A host or group name is one printable word: no space, line break or control character (it is
    shown in messages and written into a comment of the rendered compose file)."""
    if not isinstance(name, str) or not name or not name.isprintable() or any(c.isspace() for c in name):
        raise InputError(f"not a valid host or group name: {name!r} (one word of printable characters)",
                         source=source, key=key)


def all_hosts(project_dir: Path) -> list[str]:
    tree = load_yaml_file(project_dir / "inventory" / "hosts.yml", "inventory/hosts.yml")
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            hosts = node.get("hosts")
            if isinstance(hosts, dict):
                names.update(str(h) for h in hosts)
            children = node.get("children")
            if isinstance(children, dict):
                for sub in children.values():
                    walk(sub)

    for node in tree.values():
        walk(node)
    return sorted(names)


def group_members(project_dir: Path) -> dict[str, list[str]]:
    """Every group of hosts.yml (``all`` included) -> its hosts, children's hosts too, in file order."""
    tree = load_yaml_file(project_dir / "inventory" / "hosts.yml", "inventory/hosts.yml")
    groups: dict[str, list[str]] = {}

    def walk(name: str, node: Any) -> list[str]:
        members: list[str] = []
        if isinstance(node, dict):
            hosts = node.get("hosts")
            if isinstance(hosts, dict):
                members += [str(h) for h in hosts]
            children = node.get("children")
            if isinstance(children, dict):
                for child, sub in children.items():
                    members += walk(str(child), sub)
        unique = list(dict.fromkeys(members))
        groups[name] = list(dict.fromkeys(groups.get(name, []) + unique))
        return unique

    for top, node in tree.items():
        walk(str(top), node)
    groups.setdefault("all", sorted({h for m in groups.values() for h in m}))
    return groups


def load_host_layers(project_dir: Path, host: str, overrides: list[str] = ()) -> HostLayers:
    project_dir = Path(project_dir)
    inv = project_dir / "inventory"
    hosts_src = "inventory/hosts.yml"
    tree = load_yaml_file(inv / "hosts.yml", hosts_src)
    chain, host_inline = _groups_of(tree, host, hosts_src)
    if host_inline is None:
        known = ", ".join(all_hosts(project_dir)) or "none"
        raise InputError(f"host {host!r} is not in the inventory (known hosts: {known})", source=hosts_src)

    layers: list[Layer] = []
    groups = sorted({(depth, name): inline for depth, name, inline in chain}.items())
    # 'all' first, whether or not hosts.yml spells it out.
    names = ["all"] + [name for (_, name), _ in groups if name != "all"]
    inline_by_name = {name: inline for (_, name), inline in groups}
    for name in names:
        if inline_by_name.get(name):
            layers.append(Layer(source=f"{hosts_src} ({name}.vars)", data=inline_by_name[name]))
        display = f"inventory/group_vars/{name}.yml"
        data = load_yaml_file(inv / "group_vars" / f"{name}.yml", display, required=False)
        if data:
            layers.append(Layer(source=display, data=data))
    if host_inline:
        layers.append(Layer(source=f"{hosts_src} (host {host})", data=host_inline))
    display = f"inventory/host_vars/{host}.yml"
    data = load_yaml_file(inv / "host_vars" / f"{host}.yml", display, required=False)
    if data:
        layers.append(Layer(source=display, data=data))
    for text in overrides:
        layers.append(Layer(source=CLI_SOURCE, data=parse_override(text)))
    return HostLayers(host=host, groups=tuple(n for n in names if n != "all"), layers=tuple(layers),
                      project_dir=project_dir)


def load_role_defaults(project_dir: Path, role: str) -> Layer:
    display = f"roles/{role}/defaults/main.yml"
    path = Path(project_dir) / "roles" / role / "defaults" / "main.yml"
    if not path.parent.parent.is_dir():
        raise InputError(f"role {role!r} not found (no roles/{role}/)", source=display)
    return Layer(source=display, data=load_yaml_file(path, display, required=False))
