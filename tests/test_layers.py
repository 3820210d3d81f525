"""The shape of the code, checked on its source with ``ast`` (nothing is imported, so no module's
import-time side effects run):

(a) imports between packages follow the pipeline, left may import right, never back
    (issue #12; ``errors`` is importable by all, ``cli`` may import anything, nothing imports ``cli``):

        cli -> fleet -> verify -> deploy -> release -> inventory -> errors
               verify -> probe -> inventory ;  deploy -> host -> inventory

(b) no import cycle between modules, counting imports inside functions and under TYPE_CHECKING;
(c) no module over 400 lines;
(d) every package's ``__init__.py`` opens with a docstring that says what it may import, and names
    nothing the diagram forbids;
(e) only the seams import the libraries behind them: Fabric and Paramiko only in host/ssh.py,
    NVML (``pynvml``) only in host/nvml.py.

The checks are plain functions over ``{path: source}``, so the tests at the end feed them a broken
tree and see each one fail.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "sparkkit"

# package -> the packages right of it in the diagram; everything reachable from a package may be
# imported by it. ``errors`` is the bottom layer, reachable from all.
DIAGRAM = {
    "cli": {"fleet"},
    "fleet": {"verify"},
    "verify": {"deploy", "probe"},
    "deploy": {"release", "host"},
    "release": {"inventory"},
    "probe": {"inventory"},
    "host": {"inventory"},
    "inventory": {"errors"},
    "errors": set(),
}

MAX_LINES = 400
# modules allowed over MAX_LINES (none: split a long module by job instead of listing it here)
SIZE_ALLOWED: set[str] = set()

# third-party library -> the one module that may import it (the seam in front of it)
SEAMS = {"fabric": "host/ssh.py", "paramiko": "host/ssh.py", "pynvml": "host/nvml.py"}


def allowed_packages(package: str) -> set[str]:
    """The packages ``package`` may import: itself and everything reachable in the diagram."""
    seen = {package}
    todo = [package]
    while todo:
        for nxt in DIAGRAM[todo.pop()] | {"errors"}:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --- reading the tree ------------------------------------------------------------------------------

def read_tree(root: Path = SRC) -> dict[str, str]:
    """``{"host/ssh.py": source, ...}`` for every module of the package."""
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.py"))
            if "__pycache__" not in p.parts}


def module_name(path: str) -> str:
    """``host/ssh.py`` -> ``sparkkit.host.ssh``; ``host/__init__.py`` -> ``sparkkit.host``."""
    parts = ["sparkkit", *path.removesuffix(".py").split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str | None:
    """``sparkkit.host.ssh`` -> ``host``; ``sparkkit.errors`` -> ``errors``; the root and
    ``sparkkit.__main__`` -> None (the entry point, outside the diagram)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] == "__main__":
        return None
    return parts[1]


def imports(path: str, source: str, modules: set[str]) -> list[tuple[str, int]]:
    """Every import in the module, anywhere in it: (imported name, line). ``from a import b`` gives
    ``a.b`` where that is a module of the tree, else ``a``; relative imports are resolved."""
    here = module_name(path)
    package = here if path.endswith("__init__.py") else here.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if full in modules else base, node.lineno))
    return out


def import_graph(tree: dict[str, str]) -> dict[str, set[str]]:
    """module -> the modules of the tree it imports (an import of ``a.b.c`` also loads ``a.b``
    and ``a``, but only the named module counts as the edge)."""
    modules = {module_name(p) for p in tree}
    graph: dict[str, set[str]] = {}
    for path, source in tree.items():
        here = module_name(path)
        targets = set()
        for name, _ in imports(path, source, modules):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != here and name != "sparkkit":
                targets.add(name)
        graph[here] = targets
    return graph


# --- the checks: each returns its violations as sentences -------------------------------------

def direction_violations(tree: dict[str, str]) -> list[str]:
    modules = {module_name(p) for p in tree}
    out = []
    for path, source in tree.items():
        here = package_of(module_name(path))
        for name, line in imports(path, source, modules):
            if not name.startswith("sparkkit."):
                continue
            there = package_of(name)
            if there is None or there == here:
                continue
            if here is None:  # the entry point (sparkkit/__main__.py) starts the command line
                if there != "cli":
                    out.append(f"{path}:{line}: the entry point imports {name}; it may import only cli")
            elif there not in DIAGRAM:
                out.append(f"{path}:{line}: imports {name}, a package missing from the diagram")
            elif there not in allowed_packages(here):
                out.append(f"{path}:{line}: {here} imports {name}, but {there} is not right of {here} "
                           f"(may import: {', '.join(sorted(allowed_packages(here) - {here}))})")
    return out


def cycles(tree: dict[str, str]) -> list[str]:
    """Each import cycle between modules, as ``a -> b -> a`` (one per strongly connected set)."""
    graph = import_graph(tree)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_cycle_through(graph, component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> str:
    """One cycle inside a strongly connected set, for the message."""
    start = min(component)
    trail = [start]
    while True:
        nxt = min(w for w in graph[trail[-1]] if w in component)
        if nxt in trail:
            return " -> ".join(trail[trail.index(nxt):] + [nxt])
        trail.append(nxt)


def size_violations(tree: dict[str, str], allowed: set[str] = SIZE_ALLOWED) -> list[str]:
    return [f"{path}: {len(source.splitlines())} lines (at most {MAX_LINES}: split it by job)"
            for path, source in tree.items()
            if len(source.splitlines()) > MAX_LINES and path not in allowed]


def docstring_violations(tree: dict[str, str]) -> list[str]:
    out = []
    for path, source in tree.items():
        if not path.endswith("/__init__.py"):
            continue  # the packages of the diagram; sparkkit/__init__.py is the kit itself
        package = path.split("/")[0]
        doc = ast.get_docstring(ast.parse(source))
        if not doc:
            out.append(f"{path}: opens with no docstring (say the package's job and what it may import)")
            continue
        said = re.search(r"may import\b(.*)", doc, re.IGNORECASE | re.DOTALL)
        if not said:
            out.append(f"{path}: the docstring does not say what the package may import")
            continue
        for named in re.findall(r"``(?:sparkkit\.)?([a-z_]+)``", said.group(1)):
            if named in DIAGRAM and named not in allowed_packages(package):
                out.append(f"{path}: the docstring allows {named}, which the diagram forbids to {package}")
    return out


def seam_violations(tree: dict[str, str]) -> list[str]:
    modules = {module_name(p) for p in tree}
    out = []
    for path, source in tree.items():
        for name, line in imports(path, source, modules):
            library = name.split(".")[0]
            if library in SEAMS and SEAMS[library] != path:
                out.append(f"{path}:{line}: imports {name}; only {SEAMS[library]} may import {library}")
    return out


# --- the tree as it is ------------------------------------------------------------------------------

TREE = read_tree()


def test_the_tree_is_read():
    assert "inventory/build.py" in TREE and "errors.py" in TREE and "cli/main.py" in TREE
    assert set(DIAGRAM) == {p.split("/")[0].removesuffix(".py") for p in TREE} - {"__init__", "__main__"}


def test_imports_follow_the_pipeline():
    assert direction_violations(TREE) == []


def test_no_import_cycle_between_modules():
    assert cycles(TREE) == []


def test_no_module_over_400_lines():
    assert size_violations(TREE) == []


def test_every_package_says_what_it_may_import():
    assert docstring_violations(TREE) == []
    packages = {p.split("/")[0] for p in TREE if p.endswith("/__init__.py")}
    assert packages == set(DIAGRAM) - {"errors"}


def test_only_the_seams_import_fabric_paramiko_and_nvml():
    assert seam_violations(TREE) == []


# --- each check fails on a violation ---------------------------------------------------------------

def _doc(package: str) -> str:
    names = ", ".join(f"``{p}``" for p in sorted(allowed_packages(package) - {package}))
    return f'"""The {package} package.\n\nMay import: {names}.\n"""\n'


# A small tree that passes every check, so each test below breaks exactly one thing in it.
CLEAN = {
    "__init__.py": '"""The kit."""\n',
    "__main__.py": "from sparkkit.cli.main import main\n",
    "errors.py": "class InputError(Exception):\n    pass\n",
    **{f"{package}/__init__.py": _doc(package) for package in DIAGRAM if package != "errors"},
    "cli/main.py": "import sparkkit.fleet.run\nfrom sparkkit.inventory.build import build_config\n",
    "fleet/run.py": "from sparkkit.verify import run\n",
    "verify/run.py": "from sparkkit.deploy.apply import HostOps\nfrom sparkkit.probe.runner import probe_service\n",
    "verify/memory.py": "from sparkkit.host.nvml import read_nvml_gpus\n",
    "deploy/apply.py": "from sparkkit.host import ssh\nfrom sparkkit.release.render import Release\n",
    "deploy/plan.py": "from sparkkit.host.facts import HostFacts\n",
    "release/render.py": "from sparkkit.inventory.model import HostConfig\n",
    "probe/runner.py": "from ..inventory.model import Service\n",
    "host/ssh.py": "import fabric\nimport paramiko\nfrom sparkkit.inventory.model import SshSettings\n",
    "host/nvml.py": "def load():\n    import pynvml\n",
    "host/facts.py": "from .commands import SECTION\n",
    "host/commands.py": "SECTION = '=={}=='\n",
    "inventory/build.py": ("from sparkkit.errors import InputError\nfrom .model import HostConfig\n"
                           "from . import placement\n"),
    "inventory/placement.py": ("from sparkkit.inventory.model import Service\n"
                               "from sparkkit.inventory.read import Reader\n"),
    "inventory/read.py": "from sparkkit.inventory.model import Scalar\n",
    "inventory/model.py": "from dataclasses import dataclass\n",
}


def test_the_clean_tree_passes_every_check():
    assert direction_violations(CLEAN) == [] and cycles(CLEAN) == [] and size_violations(CLEAN) == []
    assert docstring_violations(CLEAN) == [] and seam_violations(CLEAN) == []


def test_allowed_packages_follow_the_diagram():
    assert allowed_packages("inventory") == {"inventory", "errors"}
    assert allowed_packages("deploy") == {"deploy", "release", "host", "inventory", "errors"}
    assert allowed_packages("verify") == {"verify", "deploy", "probe", "release", "host", "inventory", "errors"}
    assert allowed_packages("cli") == set(DIAGRAM)
    assert not any("cli" in allowed_packages(p) for p in DIAGRAM if p != "cli")


@pytest.mark.parametrize("path, source, culprit", [
    ("inventory/build.py", "from sparkkit.deploy.apply import HostOps\n", "inventory imports sparkkit.deploy.apply"),
    ("host/facts.py", "def f():\n    import sparkkit.verify.memory\n", "host imports sparkkit.verify.memory"),
    ("probe/runner.py", "from sparkkit.host import commands\n", "probe imports sparkkit.host.commands"),
    ("fleet/run.py", "from sparkkit.cli import main\n", "fleet imports sparkkit.cli.main"),
    ("errors.py", "from sparkkit.inventory.model import HostConfig\n", "errors imports sparkkit.inventory"),
    ("deploy/plan.py", "from ..verify import run\n", "deploy imports sparkkit.verify.run"),
    ("__main__.py", "from sparkkit.deploy import apply\n", "the entry point imports sparkkit.deploy.apply"),
])
def test_direction_check_catches_an_import_back(path, source, culprit):
    tree = {**CLEAN, path: source}
    (problem,) = direction_violations(tree)
    assert problem.startswith(f"{path}:") and culprit in problem


def test_direction_check_allows_the_diagram():
    tree = {**CLEAN, "cli/main.py": "import sparkkit.fleet.run\nfrom sparkkit.host.ssh import X\n",
            "fleet/run.py": "from sparkkit.verify import run\nfrom sparkkit.probe.suites import Suite\n",
            "verify/run.py": "from sparkkit.deploy.apply import HostOps\nfrom sparkkit.host import commands\n"}
    assert direction_violations(tree) == []


def test_cycle_check_catches_a_cycle_through_a_function_level_import():
    tree = {**CLEAN, "inventory/placement.py": "def place():\n    from sparkkit.inventory import build\n"}
    assert cycles(tree) == ["sparkkit.inventory.build -> sparkkit.inventory.placement -> sparkkit.inventory.build"]


def test_cycle_check_catches_a_longer_cycle_and_a_type_checking_one():
    tree = {**CLEAN, "host/a.py": "from . import b\n", "host/b.py": "import sparkkit.host.c\n",
            "host/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sparkkit.host.a import X\n",
            "host/d.py": "from sparkkit.host import a\n"}
    assert cycles(tree) == ["sparkkit.host.a -> sparkkit.host.b -> sparkkit.host.c -> sparkkit.host.a"]
    assert cycles({**tree, "host/c.py": ""}) == []


def test_size_check_catches_a_long_module():
    tree = {**CLEAN, "verify/memory.py": "x = 1\n" * 401}
    assert size_violations(tree) == ["verify/memory.py: 401 lines (at most 400: split it by job)"]
    assert size_violations({"verify/memory.py": "x = 1\n" * 400}) == []
    assert size_violations({"x/long.py": "x = 1\n" * 401}, allowed={"x/long.py"}) == []  # an allow-listed file


@pytest.mark.parametrize("source, why", [
    ("x = 1\n", "opens with no docstring"),
    ('"""Apply a release."""\n', "does not say what the package may import"),
    ('"""Apply.\n\nMay import: ``verify``, ``errors``.\n"""\n', "allows verify, which the diagram forbids to deploy"),
])
def test_docstring_check_catches_a_package_that_does_not_say(source, why):
    (problem,) = docstring_violations({**CLEAN, "deploy/__init__.py": source})
    assert problem.startswith("deploy/__init__.py: ") and why in problem


@pytest.mark.parametrize("path, source", [
    ("deploy/apply.py", "import fabric\n"),
    ("host/commands.py", "from paramiko.client import SSHClient\n"),
    ("cli/main.py", "def f():\n    import paramiko\n"),
    ("verify/memory.py", "import pynvml\n"),
])
def test_seam_check_catches_a_library_outside_its_seam(path, source):
    (problem,) = seam_violations({**CLEAN, path: source})
    assert problem.startswith(f"{path}:1:") or problem.startswith(f"{path}:2:")
