"""Summary statistics. p50 of five runs is the median of five; p90 by linear interpolation."""

from __future__ import annotations

import statistics


def percentile(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summary(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None]
    if not present:
        return {"p50": None, "p90": None, "min": None, "max": None, "n": 0}
    return {"p50": statistics.median(present), "p90": percentile(present, 0.9), "min": min(present),
            "max": max(present), "n": len(present)}
