"""One host's variables in ansible-core's precedence, each value with the file (and line) it came
from. Lowest first, as ``VariableManager.get_vars`` combines them:

1. group ``all`` as written in the inventory sources
2. the host's other groups as written in the sources, sorted by depth, ``ansible_group_priority``, name
3. ``group_vars/all`` beside each source, then ``group_vars/<group>`` in the same group order
   (a file, ``.yml``/``.yaml``/``.json`` or none, or a directory of them read in name order)
4. the host as written in the sources, then ``host_vars/<host>`` beside each source
5. the command line (``-e``)

Mappings are merged key by key at every step (Ansible's ``hash_behaviour = merge``); everything
else is replaced. Each step is itself a merge of its parts, as in Ansible (the order of merging
matters when a mapping is replaced by a scalar and set again).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkkit.inventory.graph import Inventory, Piece
from sparkkit.inventory.yamltext import load_vars_text, read_text

VARS_ENDINGS = ("", ".yml", ".yaml", ".json")


@dataclass(frozen=True)
class Origin:
    source: str  # the file, and where in it (``inventory/hosts.yml (host box)``)
    file: str
    line: int | None = None

    def text(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class Node:
    """A value with its origin; a mapping's value is a dict of Nodes."""

    __slots__ = ("value", "origin")

    def __init__(self, value: Any, origin: Origin):
        self.value = value
        self.origin = origin


def track(piece: Piece) -> Node:
    def walk(value: Any, path: tuple[str, ...]) -> Node:
        origin = Origin(piece.source, piece.file, piece.lines.get(path))
        if isinstance(value, dict):
            return Node({k: walk(v, path + (str(k),)) for k, v in value.items()}, origin)
        return Node(value, origin)
    return walk(piece.data, ())


def merge(low: Node, high: Node) -> Node:
    """Ansible's ``merge_hash``: mappings merged recursively, everything else replaced."""
    items = dict(low.value)
    for key, node in high.value.items():
        old = items.get(key)
        if old is not None and isinstance(old.value, dict) and isinstance(node.value, dict):
            items[key] = merge(old, node)
        else:
            items[key] = node
    return Node(items, high.origin)


def fold(nodes: list[Node], origin: Origin) -> Node:
    acc = Node({}, origin)
    for node in nodes:
        acc = merge(acc, node)
    return acc


def plain(node: Node) -> Any:
    if isinstance(node.value, dict):
        return {k: plain(v) for k, v in node.value.items()}
    return node.value


def find_vars_files(folder: Path, name: str) -> list[Path]:
    """``loader.find_vars_files``: the first of ``name``, ``name.yml``, ``name.yaml``, ``name.json``
    that exists; a directory: its files (no extension or one of those) in name order, recursively."""
    for ext in VARS_ENDINGS:
        path = folder / f"{name}{ext}"
        if path.exists():
            return _dir_files(path) if path.is_dir() else [path]
    return []


def _dir_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or name.endswith("~"):
            continue
        path = folder / name
        ext = os.path.splitext(name)[1]
        if path.is_dir() and not ext:
            found.extend(_dir_files(path))
        elif path.is_file() and (not ext or ext in VARS_ENDINGS):
            found.append(path)
    return found


class VarsFiles:
    """``group_vars/`` and ``host_vars/`` beside every source, read once each."""

    def __init__(self, inv: Inventory):
        self.inv = inv
        self._cache: dict[Path, Piece | None] = {}
        self._found: dict[tuple[Path, str], list[Path]] = {}
        self._folders = {kind: [self._folder(s, kind) for s in inv.sources] for kind in ("group_vars", "host_vars")}

    @staticmethod
    def _folder(source: Path, kind: str) -> Path | None:
        folder = (source if source.is_dir() else source.parent) / kind
        return folder if folder.is_dir() else None

    def files(self, folder: Path, name: str) -> list[Path]:
        key = (folder, name)
        if key not in self._found:
            self._found[key] = [] if name.startswith(os.sep) else find_vars_files(folder, name)
        return self._found[key]

    def piece(self, path: Path) -> Piece | None:
        """The file's variables (None for an empty file, which Ansible ignores)."""
        if path not in self._cache:
            display = self.inv.display(path)
            data, lines = load_vars_text(read_text(path, display), display)
            self._cache[path] = Piece(data=data, source=display, file=display, lines=lines) if data else None
        return self._cache[path]

    def _load(self, path: Path) -> Node | None:
        piece = self.piece(path)
        return None if piece is None else track(piece)

    def for_entities(self, kind: str, names: list[str]) -> Node:
        per_source: list[Node] = []
        for folder in self._folders[kind]:
            nodes: list[Node] = []
            if folder is not None:
                for name in names:
                    nodes += [n for n in (self._load(p) for p in self.files(folder, name)) if n is not None]
            per_source.append(fold(nodes, Origin(kind, kind)))
        return fold(per_source, Origin(kind, kind))

    def pieces(self, kind: str, names: list[str]) -> list[Piece]:
        return [p for folder in self._folders[kind] if folder is not None
                for name in names for p in map(self.piece, self.files(folder, name)) if p is not None]


def sorted_groups(inv: Inventory, names: list[str]) -> list[str]:
    return sorted(names, key=lambda g: (inv.groups[g].depth, inv.groups[g].priority, g))


def host_node(inv: Inventory, files: VarsFiles, host: str, extra: list[Piece] = ()) -> Node:
    """The host's variables (as ``ansible-inventory --host`` prints them), tracked."""
    root = Origin(f"inventory (host {host})", "inventory")
    groups = sorted_groups(inv, [g for g in inv.host_groups(host) if g != "all"])

    def group_node(name: str) -> Node:
        return fold([track(p) for p in inv.groups[name].pieces], root)

    steps = [
        group_node("all"),
        fold([group_node(g) for g in groups], root),
        files.for_entities("group_vars", ["all"]),
        files.for_entities("group_vars", groups),
        fold([track(p) for p in inv.hosts[host].pieces], root),
        files.for_entities("host_vars", [host]),
        *(track(p) for p in extra),
    ]
    return Node(fold(steps, root).value, root)


def host_pieces(inv: Inventory, files: VarsFiles, host: str) -> list[Piece]:
    """Every block that sets variables of the host, lowest precedence first (for showing them)."""
    groups = sorted_groups(inv, [g for g in inv.host_groups(host) if g != "all"])
    out = list(inv.groups["all"].pieces)
    for g in groups:
        out += inv.groups[g].pieces
    out += files.pieces("group_vars", ["all"]) + files.pieces("group_vars", groups)
    out += inv.hosts[host].pieces
    return out + files.pieces("host_vars", [host])
