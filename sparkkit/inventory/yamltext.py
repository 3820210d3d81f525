"""YAML as Ansible reads inventory and vars files: plain data, the line of every mapping key, and
``!unsafe`` values kept as ``Unsafe`` text that is never templated.

``load_vars_text`` returns the mapping and ``{key path: line}``; every failure is an ``InputError``
naming the file (and the line, for a syntax error).
"""

from __future__ import annotations

from typing import Any

import yaml

from sparkkit.errors import InputError

UNSAFE_TAG = "!unsafe"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it: the same result, faster


class Unsafe(str):
    """Text marked ``!unsafe``: printed and used as it is, never templated (as Ansible does)."""

    __slots__ = ()


Lines = dict[tuple[str, ...], int]


def _unsafe_leaves(value: Any) -> Any:
    if isinstance(value, str):
        return Unsafe(value)
    if isinstance(value, list):
        return [_unsafe_leaves(v) for v in value]
    if isinstance(value, dict):
        return {k: _unsafe_leaves(v) for k, v in value.items()}
    return value


_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _build(loader: Any, node: yaml.Node, path: tuple[str, ...], lines: Lines) -> Any:
    unsafe = node.tag == UNSAFE_TAG
    if not unsafe and node.tag not in (_MAP, _SEQ) and not isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node, deep=True)  # another tag: the safe loader's rules (or refusal)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a scalar",
                                                         key_node.start_mark)
            key_path = path + (str(key),)
            lines.setdefault(key_path, key_node.start_mark.line + 1)
            out[key] = _build(loader, value_node, key_path, lines)
        return _unsafe_leaves(out) if unsafe else out
    if isinstance(node, yaml.SequenceNode):
        items = [_build(loader, item, path, lines) for item in node.value]
        return _unsafe_leaves(items) if unsafe else items
    if unsafe:
        return Unsafe(node.value)
    return loader.construct_object(node, deep=True)


def load_text(text: str, display: str, loader_class: Any = _LOADER) -> tuple[Any, Lines]:
    """Any YAML document with the lines of its mapping keys."""
    loader = loader_class(text)
    lines: Lines = {}
    try:
        node = loader.get_single_node()
        data = None if node is None else _build(loader, node, (), lines)
    except yaml.YAMLError as exc:
        if loader_class is not yaml.SafeLoader:  # say it in PyYAML's own words, as everywhere else
            loader.dispose()
            return load_text(text, display, yaml.SafeLoader)
        raise yaml_error(exc, display) from None
    except RecursionError:
        raise InputError("YAML nested too deeply", source=display) from None
    finally:
        loader.dispose()
    return data, lines


def yaml_error(exc: yaml.YAMLError, display: str) -> InputError:
    """PyYAML's error in its own words, with the line and column, naming the file."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return InputError(f"YAML syntax error: {where}{problem}", source=display)


def load_vars_text(text: str, display: str) -> tuple[dict, Lines]:
    """A vars file: a mapping with text keys at the top (empty: ``{}``)."""
    data, lines = load_text(text, display)
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping at the top, got {type(data).__name__}", source=display)
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise InputError(f"keys must be strings, got {bad[0]!r}", source=display)
    return data, lines


def read_text(path, display: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (byte {exc.start})", source=display) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=display) from None
