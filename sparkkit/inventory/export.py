"""The inventory as ``ansible-inventory --list`` and ``--host`` print it (so the two can be diffed),
and ``--explain``: where each value of a host comes from, a thing Ansible cannot tell.

Values are printed as written (templates not evaluated, as ``ansible-inventory`` does; ``!unsafe``
text as ``{"__ansible_unsafe": ...}`` in ``--list``, plain in ``--host``, as it prints them); ``--explain`` shows the evaluated value beside them.
"""

from __future__ import annotations

import json
from typing import Any

from sparkkit.errors import InputError
from sparkkit.inventory.graph import Inventory
from sparkkit.inventory.hostvars import Node, VarsFiles, host_pieces, plain
from sparkkit.inventory.yamltext import Unsafe

PROFILE = "inventory_legacy"


def jsonable(value: Any, *, mark_unsafe: bool = True) -> Any:
    """JSON data; ``!unsafe`` text as ``{"__ansible_unsafe": ...}`` where ansible-inventory marks it
    (``--list``), as plain text where it does not (``--host``)."""
    if isinstance(value, Unsafe):
        return {"__ansible_unsafe": str(value)} if mark_unsafe else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v, mark_unsafe=mark_unsafe) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, mark_unsafe=mark_unsafe) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def dump(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=4, ensure_ascii=False)


def host_vars_json(node: Node, *, mark_unsafe: bool) -> dict:
    return jsonable(plain(node), mark_unsafe=mark_unsafe)


def list_json(inv: Inventory, host_vars: dict[str, dict]) -> dict:
    """``ansible-inventory --list``: every group with its direct hosts and children, then ``_meta``."""
    seen: set[str] = set()

    def format_group(name: str) -> dict:
        group = inv.groups[name]
        entry: dict = {}
        if name != "all":
            entry["hosts"] = list(group.hosts)
        entry["children"] = list(group.children)
        results = {name: entry}
        for kid in group.children:
            if kid not in seen:
                results.update(format_group(kid))
                seen.add(kid)
        for key in ("hosts", "children"):
            if key in entry and not entry[key]:
                del entry[key]
        if not entry:
            del results[name]
        return results

    results = format_group("all")
    results["_meta"] = {"hostvars": {h: v for h, v in host_vars.items() if v}, "profile": PROFILE}
    return results


def _leaves(node: Node, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Node]]:
    if isinstance(node.value, dict) and node.value:
        out: list[tuple[tuple[str, ...], Node]] = []
        for key, sub in node.value.items():
            out += _leaves(sub, path + (str(key),))
        return out
    return [(path, node)]


def _lookup(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _place(where: str, source: str, file: str) -> str:
    """``inventory/hosts.yml:9 (host box)``: the file and line, then what the place is, if more."""
    more = source[len(file):].strip() if source.startswith(file) else ""
    return f"{where} {more}" if more else where


def explain(inv: Inventory, files: VarsFiles, host: str, node: Node, values: dict, key: str,
            failures: dict[str, InputError] | None = None) -> list[str]:
    """One line per value under ``key``: the value, evaluated where it is a template, and the file
    and line that set it; then every lower setting it overrides."""
    path = tuple(key.split("."))
    found, _ = _lookup(plain(node), path)
    if not found:
        raise InputError(f"host {host!r} has no variable {key!r}", source="inventory", key=key)
    target = node
    for part in path:
        target = target.value[part]
    pieces = host_pieces(inv, files, host)
    lines: list[str] = []
    for leaf_path, leaf in _leaves(target, path):
        raw = jsonable(leaf.value)
        _, evaluated = _lookup(values, leaf_path)
        shown = json.dumps(raw, ensure_ascii=False, default=str)
        failure = (failures or {}).get(leaf_path[0])
        if failure is not None:
            shown += f" -> {failure.message}"
        elif jsonable(evaluated) != raw:
            shown += f" -> {json.dumps(jsonable(evaluated), ensure_ascii=False, default=str)}"
        lines.append(f"{'.'.join(leaf_path)} = {shown}    from {_place(leaf.origin.text(), leaf.origin.source, leaf.origin.file)}")
        for piece in reversed(pieces):
            has, value = _lookup(piece.data, leaf_path)
            if not has or piece.source == leaf.origin.source:
                continue
            line = piece.lines.get(leaf_path)
            where = f"{piece.file}:{line}" if line else piece.file
            lines.append(f"    overrides {json.dumps(jsonable(value), ensure_ascii=False, default=str)}"
                         f" from {_place(where, piece.source, piece.file)}")
    return lines
