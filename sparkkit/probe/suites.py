"""Probe suites: YAML data files shipped in the package, extended or replaced by the project's own
``suites/*.yaml`` (a file with the same ``suite`` name replaces the shipped one).

A suite's ``limits:`` replaces, key by key, its kind's default deadlines and caps
(``probe.limits.DEFAULTS``).

May import: ``probe.limits``, ``inventory`` (YAML loading), ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparkkit.errors import InputError
from sparkkit.inventory.layers import load_yaml_file
from sparkkit.probe.limits import DEFAULTS, Limits, check_overrides

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "suites"
KINDS = {"chat", "conversation", "tools", "extraction", "embeddings", "websearch", "health"}
CASE_LISTS = {"chat": "cases", "tools": "cases", "extraction": "cases", "conversation": "conversations",
              "embeddings": "texts", "websearch": "queries"}


@dataclass(frozen=True, kw_only=True)
class Suite:
    name: str
    kind: str
    source: str
    data: dict

    def get(self, key, default=None):
        return self.data.get(key, default)

    def limits(self) -> Limits:
        """The kind's default deadlines and caps, with the suite's own ``limits:`` in place."""
        return DEFAULTS[self.kind].merged(self.data.get("limits") or {})


COMMON_KEYS = {"suite", "kind", "description", "warmups", "runs", "max_tokens", "thinking", "limits"}
KIND_KEYS = {"chat": {"cases", "system"}, "tools": {"cases", "tools", "system"},
             "extraction": {"cases", "instruction", "min_recall"},
             "conversation": {"conversations", "user_turns"}, "embeddings": {"texts"},
             "websearch": {"queries", "min_results"}, "health": set()}
CASE_KEYS = {"chat": {"id", "description", "prompt", "expect_any", "max_tokens", "voice"},
             "tools": {"id", "description", "prompt", "expect", "expect_any"},
             "extraction": {"id", "description", "transcript", "expect"},
             "conversation": {"id", "description", "turns"}}
MAX_REPEATS = 10_000  # warmups, runs, max_tokens beyond this are typos


def _reject_unknown(data: dict, allowed: set[str], source: str, prefix: str = "") -> None:
    for key in data:
        if key not in allowed:
            raise InputError(f"unknown key (expected one of: {', '.join(sorted(allowed))})", source=source,
                             key=f"{prefix}{key}")


HEALTH = Suite(name="health", kind="health", source="(built in)", data={"warmups": 1, "runs": 5})


def _check(data: dict, source: str) -> Suite:
    name, kind = data.get("suite"), data.get("kind")
    if not isinstance(name, str) or not name:
        raise InputError("missing value (a string is required)", source=source, key="suite")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InputError(f"expected one of {', '.join(sorted(KINDS))}, got {kind!r}", source=source, key="kind")
    _reject_unknown(data, COMMON_KEYS | KIND_KEYS[kind], source)
    list_key = CASE_LISTS.get(kind)
    if list_key:
        items = data.get(list_key)
        if not isinstance(items, list) or not items:
            raise InputError("expected a non-empty list", source=source, key=list_key)
        if kind in ("chat", "tools", "extraction", "conversation"):
            seen = set()
            for i, item in enumerate(items):
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise InputError("each entry needs an id", source=source, key=f"{list_key}.{i}")
                _reject_unknown(item, CASE_KEYS[kind], source, f"{list_key}.{i}.")
                if item["id"] in seen:
                    raise InputError(f"duplicate id {item['id']!r}", source=source, key=f"{list_key}.{i}.id")
                seen.add(item["id"])
                if kind in ("chat", "tools") and not isinstance(item.get("prompt"), str):
                    raise InputError("missing prompt (a string)", source=source, key=f"{list_key}.{i}.prompt")
                if kind == "extraction" and not isinstance(item.get("transcript"), str):
                    raise InputError("missing transcript (a string)", source=source, key=f"{list_key}.{i}.transcript")
    if kind == "tools" and not isinstance(data.get("tools"), list):
        raise InputError("expected a list of tool definitions", source=source, key="tools")
    if kind == "conversation" and not isinstance(data.get("user_turns"), list):
        raise InputError("expected a list of user messages", source=source, key="user_turns")
    if "limits" in data:
        wrong = check_overrides(data["limits"])
        if wrong is not None:
            raise InputError(wrong[1], source=source, key=f"limits{wrong[0]}")
    for key in ("warmups", "runs", "max_tokens"):
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0):
            raise InputError(f"expected a non-negative integer, got {data[key]!r}", source=source, key=key)
        if key in data and data[key] > MAX_REPEATS:
            raise InputError(f"{data[key]} is too large (at most {MAX_REPEATS})", source=source, key=key)
    return Suite(name=name, kind=kind, source=source, data=data)


def load_suites(project_dir: Path | None = None) -> dict[str, Suite]:
    suites = {"health": HEALTH}
    dirs = [(PACKAGE_DIR, "sparkkit/suites")]
    if project_dir is not None and (Path(project_dir) / "suites").is_dir():
        dirs.append((Path(project_dir) / "suites", "suites"))
    for folder, shown in dirs:
        for path in sorted(folder.glob("*.yaml")):
            source = f"{shown}/{path.name}"
            suite = _check(load_yaml_file(path, source), source)
            suites[suite.name] = suite
    return suites
