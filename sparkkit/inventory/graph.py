"""The inventory as ansible-core holds it: groups and hosts in the order they were made, the
implicit groups ``all`` and ``ungrouped``, children at any depth, group depth (the longest path
from ``all``) and ``ansible_group_priority``. Every variable assignment is kept as a ``Piece``
(its data, the file it came from, the line of each key). Filled by ``sources.py`` and ``ini.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkkit.errors import InputError
from sparkkit.inventory.ranges import RangeError, expand, split_port
from sparkkit.inventory.yamltext import Lines


@dataclass(frozen=True, kw_only=True)
class Piece:
    """One block of variables as written: ``source`` names the file and place, ``lines`` the key lines."""
    data: dict
    source: str
    file: str
    lines: Lines = field(default_factory=dict)


@dataclass(kw_only=True)
class Group:
    name: str
    pieces: list[Piece] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    priority: int = 1
    depth: int = 0


@dataclass(kw_only=True)
class Host:
    name: str
    pieces: list[Piece] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # direct groups, in the order they were added


class Inventory:
    """Groups and hosts in the order Ansible creates them, with its rules for adding them."""

    def __init__(self, project_dir: Path):
        self.project_dir = project_dir
        self.groups: dict[str, Group] = {"all": Group(name="all"), "ungrouped": Group(name="ungrouped")}
        self.hosts: dict[str, Host] = {}
        self.sources: list[Path] = []
        self.add_child("all", "ungrouped")

    def display(self, path: Path) -> str:
        try:
            return str(Path(os.path.abspath(path)).relative_to(os.path.abspath(self.project_dir)))
        except ValueError:
            return str(path)

    def add_group(self, name: str, *, source: str, key: str = "") -> Group:
        check_name(name, source=source, key=key)
        return self.groups.setdefault(name, Group(name=name))

    def add_host(self, name: str, group: str | None, port: int | None, *, source: str, key: str = "") -> Host:
        check_name(name, source=source, key=key)
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = Host(name=name)
            if port is not None:
                host.pieces.append(Piece(data={"ansible_port": port}, source=f"{source} (host {name})", file=source))
        if group is not None:
            g = self.groups[group]
            if name not in g.hosts:
                g.hosts.append(name)
                host.groups.append(group)
        return host

    def set_group_vars(self, group: str, piece: Piece) -> None:
        g = self.groups[group]
        data = dict(piece.data)
        if "ansible_group_priority" in data:
            value = data.pop("ansible_group_priority")
            try:
                g.priority = int(value)
            except (TypeError, ValueError):
                raise InputError(f"expected an integer, got {value!r}", source=piece.file,
                                 key="ansible_group_priority") from None
        if data:
            g.pieces.append(Piece(data=data, source=piece.source, file=piece.file, lines=piece.lines))

    def add_child(self, parent: str, child: str) -> None:
        p, c = self.groups[parent], self.groups[child]
        if parent == child or parent in self.descendants(child):
            raise InputError(f"adding group {child!r} to {parent!r} makes a loop", source="inventory")
        if child in p.children:
            return
        p.children.append(child)
        if parent not in c.parents:
            c.parents.append(parent)
        self._deepen(child, p.depth + 1)

    def _deepen(self, name: str, depth: int) -> None:
        g = self.groups[name]
        if depth > g.depth:
            g.depth = depth
            for kid in g.children:
                self._deepen(kid, depth + 1)

    def descendants(self, name: str) -> list[str]:
        out: list[str] = []
        todo = list(self.groups[name].children)
        while todo:
            kid = todo.pop(0)
            if kid not in out:
                out.append(kid)
                todo.extend(self.groups[kid].children)
        return out

    def ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        todo = list(self.groups[name].parents)
        while todo:
            g = todo.pop()
            if g not in out:
                out.add(g)
                todo.extend(self.groups[g].parents)
        return out

    def host_groups(self, host: str) -> list[str]:
        """Every group of the host, its direct groups' ancestors too, ``all`` included."""
        names: set[str] = set()
        for g in self.hosts[host].groups:
            names.add(g)
            names |= self.ancestors(g)
        return list(names)

    def hosts_in_file_order(self, name: str) -> list[str]:
        """The hosts of a group and of its descendants, each once, depth first (as written)."""
        out: list[str] = []

        def walk(g: str) -> None:
            for h in self.groups[g].hosts:
                if h not in out:
                    out.append(h)
            for kid in self.groups[g].children:
                walk(kid)
        walk(name)
        return out

    def group_hosts(self, name: str) -> list[str]:
        """The hosts of a group and of its descendants, each once, level by level (Ansible's
        ``groups`` variable)."""
        out: list[str] = []
        for g in [name, *self.descendants(name)]:
            for h in self.groups[g].hosts:
                if h not in out:
                    out.append(h)
        return out

    def reconcile(self) -> None:
        """Ansible's last step: every group under ``all``; hosts in no group go to ``ungrouped``."""
        for name in list(self.groups):
            if name != "all" and not self.groups[name].parents:
                self.add_child("all", name)
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts.values():
            mine = set(self.host_groups(host.name))
            if "ungrouped" in mine:
                if mine - {"all", "ungrouped"}:
                    ungrouped.hosts.remove(host.name)
                    host.groups.remove("ungrouped")
            elif not mine or mine == {"all"}:
                ungrouped.hosts.append(host.name)
                host.groups.append("ungrouped")


def check_name(name: Any, *, source: str, key: str) -> None:
    """A host or group name is one printable word: no space, line break or control character (it is
    shown in messages and written into a comment of the rendered compose file)."""
    if not isinstance(name, str) or not name or not name.isprintable() or any(c.isspace() for c in name):
        raise InputError(f"not a valid host or group name: {name!r} (one word of printable characters)",
                         source=source, key=key)


def hosts_of_pattern(pattern: Any, *, source: str, key: str) -> tuple[list[str], int | None]:
    if not isinstance(pattern, str):
        raise InputError(f"a host name must be text, got {pattern!r} (quote it)", source=source, key=key)
    name, port = split_port(pattern)
    try:
        return expand(name), port
    except RangeError as exc:
        raise InputError(str(exc), source=source, key=key) from None
