"""Reading what a server sent, checked: JSON within its caps, and every field the kit reads by type.

``loads_json`` decodes bytes or text as strict UTF-8 JSON (no NaN or Infinity) no deeper than the
cap; ``get`` reads one field of an object with its expected JSON type. Each raises ``Breach`` with
a reason that names the field by its path (``choices[0].delta.content``) or the limit.

May import: ``probe.limits``.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate

from sparkkit.probe.limits import Breach, Failure

_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
          bool: "a boolean"}
MAX_COUNT = 10_000_000  # token counts, indexes: anything above is absurd


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return _NAMES.get(type(value), type(value).__name__)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def loads_json(raw: bytes | str, *, max_depth: int, what: str = "the answer") -> object:
    """``raw`` as JSON; invalid UTF-8, malformed JSON or nesting deeper than ``max_depth`` is a Breach.
    The depth is measured before parsing (``nesting``), so the parser never recurses deeply: a
    RecursionError inside it can upset the interpreter for the rest of the process."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Breach(Failure.BAD_UTF8, f"{what}: invalid UTF-8 at byte {exc.start}") from None
    if raw.count("[") + raw.count("{") > max_depth and nesting(raw) > max_depth:  # cheap test first
        raise Breach(Failure.JSON_DEPTH, f"{what}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise Breach(Failure.BAD_JSON, f"{what}: not JSON ({_why(exc)})") from None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


def nesting(text: str) -> int:
    """How deep the arrays and objects of JSON ``text`` nest, strings left out; linear, no parsing,
    no loop in Python (16 MiB of brackets in well under a second)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(0, max(accumulate(array("b", brackets.encode("ascii").translate(_STEPS)))))


def _why(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at char {exc.pos}"
    return str(exc)


def depth(value: object) -> int:
    """How deep arrays and objects nest in ``value`` (a scalar is 0); no recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        todo.extend((child, level + 1) for child in children)
    return deepest


def get(obj: dict, key: str, kind: type, path: str, *, required: bool = False):
    """``obj[key]`` when it is of ``kind`` (``float`` takes integers too; null counts as missing);
    a wrong type, or a missing required field, is a Breach naming ``path.key``."""
    name = f"{path}.{key}" if path else key
    value = obj.get(key)
    if value is None:
        if required:
            raise Breach(Failure.MISSING, f"{name}: missing")
        return None
    kinds = (int, float) if kind is float else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and kind is not bool):
        raise Breach(Failure.WRONG_TYPE, f"{name}: expected {_NAMES[kind]}, got {json_type(value)}")
    return value


def item(value: object, kind: type, path: str):
    """One element of an array, checked like ``get``'s fields."""
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Breach(Failure.WRONG_TYPE, f"{path}: expected {_NAMES[kind]}, got {json_type(value)}")
    return value


def count(obj: dict, key: str, path: str) -> int | None:
    """A count (tokens, an index): an integer from 0 to ``MAX_COUNT``, or None when absent."""
    value = get(obj, key, int, path)
    if value is not None and not 0 <= value <= MAX_COUNT:
        raise Breach(Failure.OUT_OF_RANGE, f"{path}.{key}: {value} is out of range (0 to {MAX_COUNT})")
    return value
