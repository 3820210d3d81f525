"""Prometheus text exposition format (what vLLM's /metrics serves), parsed. Pure; never raises.

``parse(text)`` gives every sample (name, labels, value) and the families' declared types; a line
that is not a valid sample or comment is counted in ``Exposition.skipped`` and left out, so a
server's odd line never hides the rest. ``histogram(expo, family)`` sums a histogram's ``_sum``
and ``_count`` over its label sets (engines, models), optionally for one ``model_name``.

Format: ``# HELP name text``, ``# TYPE name counter|gauge|histogram|summary|untyped``, other ``#``
lines are comments; a sample is ``name{label="value",...} value [timestamp]``, label values
escape ``\\``, ``\\"`` and ``\\n``; values are floats, ``+Inf``, ``-Inf`` or ``NaN``.

May import nothing of the kit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True, kw_only=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted by label name
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass(frozen=True, kw_only=True)
class Exposition:
    samples: tuple[Sample, ...]
    types: dict[str, str]  # family name -> declared type
    skipped: int  # lines that were neither a sample nor a comment


@dataclass(frozen=True, kw_only=True)
class HistogramTotal:
    """A histogram's ``_sum`` and ``_count`` summed over its label sets."""

    sum: float | None  # None when the exposition has no _sum sample of it
    count: float


def _value(text: str) -> float | None:
    low = text.lower()
    if low in ("+inf", "inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    if low == "nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _labels(text: str, i: int) -> tuple[tuple[tuple[str, str], ...], int] | None:
    """Labels from ``text[i]`` == "{" to the closing "}": (labels, index after it), None when malformed."""
    out: dict[str, str] = {}
    i += 1
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "}":
            return tuple(sorted(out.items())), i + 1
        m = _LABEL.match(text, i)
        if not m:
            return None
        key, i = m.group(0), m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if text[i:i + 2] != '="':
            return None
        i += 2
        value: list[str] = []
        while i < len(text) and text[i] != '"':
            if text[i] == "\\":
                if i + 1 >= len(text) or text[i + 1] not in _ESCAPES:
                    return None
                value.append(_ESCAPES[text[i + 1]])
                i += 2
            else:
                value.append(text[i])
                i += 1
        if i >= len(text):
            return None
        out[key] = "".join(value)
        i += 1
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1
        elif i >= len(text) or text[i] != "}":
            return None


def parse_line(line: str) -> Sample | None:
    """One sample line, or None when it is not one."""
    m = _NAME.match(line)
    if not m:
        return None
    name, i = m.group(0), m.end()
    labels: tuple[tuple[str, str], ...] = ()
    if i < len(line) and line[i] == "{":
        got = _labels(line, i)
        if got is None:
            return None
        labels, i = got
    rest = line[i:].split()
    if not rest or len(rest) > 2 or (i < len(line) and line[i] not in " \t"):
        return None
    value = _value(rest[0])
    if value is None or (len(rest) == 2 and _value(rest[1]) is None):
        return None
    return Sample(name=name, labels=labels, value=value)


def parse(text: str) -> Exposition:
    samples, types, skipped = [], {}, 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].split(None, 3)
            if len(parts) >= 3 and parts[0] == "TYPE" and _NAME.fullmatch(parts[1]):
                types[parts[1]] = parts[2].lower()
            continue
        sample = parse_line(line)
        if sample is None:
            skipped += 1
        else:
            samples.append(sample)
    return Exposition(samples=tuple(samples), types=types, skipped=skipped)


def histogram(expo: Exposition, family: str, *, model: str | None = None) -> HistogramTotal | None:
    """``family``'s _sum and _count over every label set (those of ``model_name`` == ``model`` when
    given); None when the exposition has no ``_count`` sample of it."""
    total = {"_sum": 0.0, "_count": 0.0}
    seen: set[str] = set()
    for s in expo.samples:
        if not s.name.startswith(family) or s.name[len(family):] not in total:
            continue
        if model is not None and s.label("model_name") not in (None, model):
            continue
        if math.isnan(s.value) or math.isinf(s.value):
            continue
        total[s.name[len(family):]] += s.value
        seen.add(s.name[len(family):])
    if "_count" not in seen:
        return None
    return HistogramTotal(sum=total["_sum"] if "_sum" in seen else None, count=total["_count"])
