"""Host patterns as Ansible expands them: ``spark[01:04]``, ``node[a:f]``, ``db[1:9:2]-x``, several
ranges in one name, and an optional ``:port`` after the pattern. Pure."""

from __future__ import annotations

import re
import string

_PORT_RE = re.compile(r"^(?P<host>.+):(?P<port>[0-9]+)$")


class RangeError(ValueError):
    """A host range Ansible would refuse (the message says why)."""


def expand(pattern: str) -> list[str]:
    """Every host name a pattern stands for, in Ansible's order (``expand_hostname_range``)."""
    if "[" not in pattern:
        return [pattern]
    head, rest = pattern.split("[", 1)
    if "]" not in rest:
        raise RangeError(f"host range has no closing ']': {pattern!r}")
    body, tail = rest.split("]", 1)
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise RangeError("host range must be begin:end or begin:end:step")
    beg, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise RangeError("host range must specify end value")
    width = 0
    if beg[0] == "0" and len(beg) > 1:
        if len(beg) != len(end):
            raise RangeError("host range must specify equal-length begin and end formats")
        width = len(beg)
    try:
        stride = int(step)
    except ValueError:
        raise RangeError(f"host range step must be a number, got {step!r}") from None
    if stride == 0:
        raise RangeError("host range step must not be 0")
    letters = string.ascii_letters
    if beg in letters and end in letters and len(beg) == 1 and len(end) == 1:
        i, j = letters.index(beg), letters.index(end)
        if i > j:
            raise RangeError("host range must have begin <= end")
        seq: list[str] = list(letters[i:j + 1:stride])
    else:
        try:
            seq = [str(n).zfill(width) if width else str(n) for n in range(int(beg), int(end) + 1, stride)]
        except ValueError:
            raise RangeError(f"host range bounds must be numbers or single letters: [{body}]") from None
    out: list[str] = []
    for part in seq:
        out.extend(expand(f"{head}{part}{tail}"))
    return out


def split_port(pattern: str) -> tuple[str, int | None]:
    """``name:22`` -> (``name``, 22); a pattern with more colons outside its ranges (an IPv6
    address) or none keeps them all."""
    outside = re.sub(r"\[[^\]]*\]", "", pattern)
    m = _PORT_RE.match(pattern)
    if m and outside.count(":") == 1:
        return m.group("host"), int(m.group("port"))
    return pattern, None
