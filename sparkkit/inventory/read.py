"""Typed reading of one inventory mapping: every error names the file that set the key and the
key path (``inventory/host_vars/spark.yml: services.vllm-nemotron.port: expected an integer,
got 'abc'``), and values no real inventory needs (huge, non-finite, NUL bytes) are refused.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from sparkkit.errors import InputError
from sparkkit.inventory.model import Scalar

MISSING = object()
TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


class Reader:
    """Typed access to one mapping with errors that name the file and the key path."""

    def __init__(self, data: dict, path: tuple[str, ...], origin: Callable[[tuple[str, ...]], str]):
        self.data = data
        self.path = path
        self.origin = origin
        self.used: set[str] = set()

    def fail(self, key: str | tuple[str, ...], message: str) -> InputError:
        keys = (key,) if isinstance(key, str) else key
        full = self.path + tuple(keys)
        return InputError(message, source=self.origin(full), key=".".join(full))

    def get(self, key: str, kind: type, default: Any = MISSING, *, nullable: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is MISSING:
                raise self.fail(key, f"missing value ({TYPE_WORDS[kind]} is required)")
            return default
        value = self.data[key]
        if value is None and nullable:
            return None
        return check_type(value, kind, lambda msg: self.fail(key, msg))

    def sub(self, key: str) -> "Reader":
        value = self.get(key, dict, {})
        return Reader(value, self.path + (key,), self.origin)

    def reject_unknown(self, allowed: set[str] | None = None) -> None:
        allowed = self.used if allowed is None else allowed
        for key in self.data:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                raise self.fail(str(key), f"unknown key (expected one of: {hint})")


MAX_TEXT = 4096  # characters in one string value (a model id, an image, a path, a flag value)
MAX_INT = 2**31 - 1


def check_size(value: Any, fail: Callable[[str], InputError]) -> None:
    """Values no real inventory needs: very long strings, huge or non-finite numbers, NUL bytes."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise fail(f"value too long ({len(value)} characters; at most {MAX_TEXT})")
        if "\0" in value:
            raise fail("value holds a NUL character")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_INT:
            raise fail(f"number out of range (at most {MAX_INT})")
    elif isinstance(value, float) and (not math.isfinite(value) or abs(value) > 1e15):
        raise fail(f"number out of range: {value!r}")


def check_type(value: Any, kind: type, fail: Callable[[str], InputError]) -> Any:
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        list: lambda v: isinstance(v, list),
        dict: lambda v: isinstance(v, dict),
    }[kind](value)
    if not ok:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise fail(f"expected {TYPE_WORDS[kind]}, got {shown}")
    check_size(value, fail)
    return float(value) if kind is float else value


def string_list(reader: Reader, key: str, default: Any = MISSING) -> tuple[str, ...] | None:
    items = reader.get(key, list, default, nullable=True)
    if items is None:
        return None
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise reader.fail((key, str(i)), f"expected a string, got {item!r}")
        check_size(item, lambda msg, i=i: reader.fail((key, str(i)), msg))
    return tuple(str(item) for item in items)


def scalar_map(reader: Reader, key: str, *, allow_null: bool = False) -> tuple[tuple[str, Scalar], ...]:
    mapping = reader.get(key, dict, {})
    out = []
    for name, value in mapping.items():
        if not isinstance(name, str) or not name:
            raise reader.fail((key, str(name)), "keys must be non-empty strings")
        if value is None and allow_null:
            out.append((name, None))
        elif isinstance(value, (str, int, float, bool)):
            check_size(value, lambda msg: reader.fail((key, name), msg))
            if isinstance(value, str) and ("\n" in value or "\r" in value):
                raise reader.fail((key, name), "value must be a single line (it holds a line break)")
            out.append((name, value))
        else:
            raise reader.fail((key, name), f"expected a string, number or boolean, got {value!r}")
    return tuple(out)


def optional_number(reader: Reader, key: str) -> float | None:
    value = reader.get(key, float, None, nullable=True)
    if value is not None and value < 0:
        raise reader.fail(key, f"must not be negative, got {value}")
    return value


def optional_sub(reader: Reader, key: str) -> Reader | None:
    """The mapping under ``key``, or None where it is missing or null."""
    if reader.data.get(key) is None:
        reader.used.add(key)
        return None
    return reader.sub(key)


def positive_int(reader: Reader, key: str, default: Any = MISSING) -> int:
    value = reader.get(key, int, default)
    if value <= 0:
        raise reader.fail(key, f"must be greater than 0, got {value}")
    return value


def non_negative_int(reader: Reader, key: str, default: Any = MISSING) -> int:
    value = reader.get(key, int, default)
    if value < 0:
        raise reader.fail(key, f"must not be negative, got {value}")
    return value


def port_number(reader: Reader, key: str, default: Any = MISSING) -> int:
    value = reader.get(key, int, default)
    if not 1 <= value <= 65535:
        raise reader.fail(key, f"must be a port number 1-65535, got {value}")
    return value
