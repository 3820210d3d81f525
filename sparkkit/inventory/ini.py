"""INI inventories as ansible-core's ini plugin reads them: hosts before any section are
``ungrouped``; ``[group]`` hosts with ``key=value`` variables, ``[group:vars]``,
``[group:children]`` (a child may be declared later in the file); values through Python's
``literal_eval`` (``1`` a number, ``True`` a boolean, ``true`` text, ``[1, 2]`` a list)."""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from sparkkit.errors import InputError
from sparkkit.inventory.graph import Inventory, Piece, hosts_of_pattern

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def _coerce(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    if value is ... or isinstance(value, complex):
        return str(value) if value is not ... else "..."
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def parse_value(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal if it is one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def parse_ini(inv: Inventory, text: str, src: str) -> None:
    group, state = "ungrouped", "hosts"
    pending: dict[str, dict] = {}

    def fail(lineno: int, message: str) -> InputError:
        return InputError(message, source=f"{src}:{lineno}")

    def add_pending_children(name: str) -> None:
        for parent in pending[name]["parents"]:
            inv.add_child(parent, name)
            if parent in pending and pending[parent]["state"] == "children":
                add_pending_children(parent)
        del pending[name]

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise fail(lineno, f"section [{group}:{state}] has unknown type: {state}")
            if group not in inv.groups:
                if state == "vars" and group not in pending:
                    pending[group] = {"line": lineno, "state": state}
                inv.add_group(group, source=f"{src}:{lineno}")
            if group in pending and state != "vars":
                if pending[group]["state"] == "children":
                    add_pending_children(group)
                elif pending[group]["state"] == "vars":
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise fail(lineno, f"invalid section entry: {line!r} (no spaces or other characters allowed)")
        if state == "hosts":
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as exc:
                raise fail(lineno, f"cannot parse host definition: {exc}") from None
            names, port = hosts_of_pattern(tokens[0], source=f"{src}:{lineno}", key="")
            if tokens[0].strip().endswith(":") and port is None:
                raise fail(lineno, f"host pattern {tokens[0]!r} ends in ':' (reserved for a port)")
            variables: dict = {}
            lines = {}
            for token in tokens[1:]:
                if "=" not in token:
                    raise fail(lineno, f"expected key=value host variable assignment, got: {token}")
                key, value = token.split("=", 1)
                variables[key] = parse_value(value)
                lines[(key,)] = lineno
            for name in names:
                inv.add_host(name, group, port, source=f"{src}:{lineno}")
                if variables:
                    inv.hosts[name].pieces.append(
                        Piece(data=dict(variables), source=f"{src} (host {name})", file=src, lines=lines))
        elif state == "vars":
            if "=" not in line:
                raise fail(lineno, f"expected key=value, got: {line}")
            key, value = (part.strip() for part in line.split("=", 1))
            inv.set_group_vars(group, Piece(data={key: parse_value(value)}, source=f"{src} ({group}.vars)",
                                            file=src, lines={(key,): lineno}))
        else:
            m = _GROUP_NAME.match(line)
            if not m:
                raise fail(lineno, f"expected group name, got: {line}")
            child = m.group(1)
            if child not in inv.groups:
                pending.setdefault(child, {"line": lineno, "state": "children", "parents": []})
                pending[child].setdefault("parents", []).append(group)
            else:
                inv.add_child(group, child)
    for name, decl in pending.items():
        if decl["state"] == "vars":
            raise fail(decl["line"], f"section [{name}:vars] is not valid for undefined group {name!r}")
        raise fail(decl["line"], f"section [{decl['parents'][-1]}:children] includes undefined group {name!r}")
