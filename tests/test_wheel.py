"""The kit as `pip install` gives it: a wheel built from the checkout, installed into a fresh venv
outside the checkout, run from a folder outside the checkout (the editable install of `make venv`
hides a wheel that lacks a subpackage or the suite files). And every declared runtime dependency
earns its place: each is imported by sparkkit/, and everything sparkkit/ imports is declared.

The fresh venv takes the declared dependencies from this test's own environment (a .pth line)
instead of downloading them, to stay fast; `pip check` there proves the wheel's requirements are
met. The sparkkit package itself comes only from the wheel: the test asserts where it is imported from.
"""

import ast
import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from testbed.local_sim import vllm_sim

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "sparkkit"
GOLDEN = Path(__file__).parent / "golden"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# what `import` names for each declared distribution
IMPORT_NAMES = {"fabric": "fabric", "paramiko": "paramiko", "jinja2": "jinja2", "pyyaml": "yaml",
                "httpx": "httpx", "tabulate": "tabulate", "nvidia-ml-py": "pynvml"}
# what a copy of the checkout leaves out: outputs, caches, environments, local state
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".testbed*", "build", "dist", "out", "reports", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".hypothesis", "bench*.json")


def run(argv, *, cwd, timeout_s=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout_s)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def declared() -> dict[str, str]:
    """Declared runtime distribution name -> its requirement string."""
    out = {}
    for req in PYPROJECT["project"]["dependencies"]:
        name = req.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        out[name.strip().lower()] = req
    return out


def sparkkit_imports() -> dict[str, set[str]]:
    """Top-level module name -> the sparkkit/ files that import it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


# --- dependencies (no build needed) -------------------------------------------------------------

def test_every_declared_dependency_is_imported_by_the_kit():
    imports = sparkkit_imports()
    for dist, req in declared().items():
        assert dist in IMPORT_NAMES, f"{req}: add its import name to IMPORT_NAMES (and to README 'Dependencies')"
        assert IMPORT_NAMES[dist] in imports, f"{req} is declared but no module under sparkkit/ imports " \
                                              f"{IMPORT_NAMES[dist]!r}: use it or drop it"


def test_every_third_party_import_is_declared():
    provided = {IMPORT_NAMES[d] for d in declared() if d in IMPORT_NAMES}
    third_party = {name: files for name, files in sparkkit_imports().items()
                   if name not in sys.stdlib_module_names and name != "sparkkit"}
    undeclared = {name: sorted(files) for name, files in third_party.items() if name not in provided}
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"


def test_docker_sdk_and_pynvml_shim_are_not_declared():
    assert "docker" not in declared()  # docker runs on the remote host through SSH, not through the SDK
    assert "pynvml" not in declared() and "nvidia-ml-py" in declared()


def test_readme_names_every_dependency():
    readme = (REPO / "README.md").read_text()
    assert "\n## Dependencies\n" in readme
    section = readme.split("\n## Dependencies\n", 1)[1].split("\n## ", 1)[0]
    for dist in declared():
        assert f"`{dist}`" in section, f"README 'Dependencies' does not say where {dist} is used"


# --- the wheel ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built as `pip wheel .` does (isolated build with pyproject's build requirements),
    from a copy of the checkout: setuptools builds in the source tree, and a stale build/ there
    could slip removed modules into the wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE, symlinks=True)
    ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src], cwd=tmp, timeout_s=300))
    [built] = (tmp / "dist").glob("sparkkit-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the checkout with the wheel installed (not editable)."""
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    ok(run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp))
    python = venv / "bin" / "python"
    ok(run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
           cwd=tmp, timeout_s=300))
    site = Path(ok(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp)).strip())
    # the dependencies: this environment's site-packages, after the venv's own (a .pth path line does
    # not run that folder's .pth files, so the checkout's editable install stays out)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_sparkkit_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    return venv


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working folder outside the checkout."""
    assert REPO not in tmp_path.resolve().parents
    return tmp_path


def test_wheel_holds_every_subpackage_module_and_suite_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        [record] = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        recorded = {line.split(",")[0] for line in zf.read(record).decode().splitlines() if line}
        assert recorded == set(zf.namelist())
    subpackages = sorted(p.parent.relative_to(REPO).as_posix() for p in PACKAGE.rglob("__init__.py"))
    assert {"sparkkit/cli", "sparkkit/inventory", "sparkkit/release", "sparkkit/host", "sparkkit/deploy",
            "sparkkit/verify", "sparkkit/fleet", "sparkkit/probe"} <= set(subpackages)
    for sub in subpackages:
        assert f"{sub}/__init__.py" in recorded, f"the wheel lacks the package {sub}"
    modules = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert modules - recorded == set()
    suites = {p.relative_to(REPO).as_posix() for p in (PACKAGE / "suites").glob("*.yaml")}
    assert "sparkkit/suites/standard.yaml" in suites and suites - recorded == set()
    entry_points = zipfile.ZipFile(wheel).read(record.replace("RECORD", "entry_points.txt")).decode()
    assert "sparkkit = sparkkit.cli.main:entry" in entry_points


def test_installed_package_comes_from_the_wheel_and_its_requirements_are_met(venv, outside):
    python = venv / "bin" / "python"
    where = Path(ok(run([python, "-c", "import sparkkit; print(sparkkit.__file__)"], cwd=outside)).strip())
    assert venv in where.parents and REPO not in where.parents
    suites_py = ok(run([python, "-c", "import sparkkit.probe.suites as s; print(s.PACKAGE_DIR)"], cwd=outside))
    assert venv in Path(suites_py.strip()).parents
    assert "No broken requirements" in ok(run([sys.executable, "-m", "pip", "--python", python, "check"], cwd=outside))


def test_sparkkit_version(venv, outside):
    out = ok(run([venv / "bin" / "sparkkit", "--version"], cwd=outside))
    assert out.strip() == f"sparkkit {PYPROJECT['project']['version']}"


def test_sparkkit_render_lists_and_writes_the_golden_release(venv, outside):
    sparkkit = venv / "bin" / "sparkkit"
    listing = ok(run([sparkkit, "render", "spark", "--project-dir", REPO], cwd=outside))
    assert listing.startswith("release r") and " for spark:" in listing.splitlines()[0]
    for name in ("docker-compose.yml", "env/searxng.env", "settings.yml", "release.json"):
        assert name in listing
    ok(run([sparkkit, "render", "spark", "--project-dir", REPO, "--out", outside / "out"], cwd=outside))
    compose = (outside / "out" / "docker-compose.yml").read_text()
    assert compose == (GOLDEN / "spark-docker-compose.yml").read_text()
    [settings] = (outside / "out").glob("files/searxng/*/settings.yml")
    assert settings.read_text() == (GOLDEN / "spark-searxng-settings.yml").read_text()


def test_sparkkit_probe_url_against_a_local_simulator(venv, outside):
    records = outside / "records.json"
    with vllm_sim(served_name="sim-model", env={"SIM_TTFT_MS": "2", "SIM_DECODE_TOK_S": "2000"}) as base_url:
        proc = run([venv / "bin" / "sparkkit", "probe", "--url", base_url, "--suite", "standard",
                    "--json", records, "--project-dir", outside], cwd=outside)
    text = ok(proc)
    assert "Latency & Throughput (standard)" in text and "simple_greeting" in text and "5/5" in text
    [probe] = json.loads(records.read_text())["probes"]
    assert probe["model"] == "sim-model"  # from /v1/models
    [result] = probe["results"]
    assert all(r["ok"] for r in result["records"]) and sum(not r["warmup"] for r in result["records"]) == 25
