"""Run the contract tier (`make test-vllm`, after tools/vllm/venv.sh and make_model.py): start the real
`vllm serve` on the tiny model twice, with the parser flags the kit renders and with none ("plain"),
wait until both are healthy
(printing progress), run ``pytest -m vllm_contract tests/contract/`` against it and the simulator,
check that the server is still alive, and stop it. Exit code: pytest's, or 1 when the server did not
start or died.

    .venv/bin/python tools/vllm/contract.py [pytest args...]

The servers' logs are out/vllm-contract/serve.log and serve-plain.log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.contract import servers  # noqa: E402

VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".vllm-venv"))
MODEL = Path(os.environ.get("VLLM_MODEL_DIR", ROOT / ".vllm-model"))
LOG_DIR = ROOT / "out" / "vllm-contract"
READY_TIMEOUT_S = 420
PROGRESS_EVERY_S = 10
# the CPU build's settings: 1 GiB of KV cache is room for the tiny model many times over; no network
SERVE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
             "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_LOGGING_LEVEL": "INFO"}
CRASH_SIGNS = ("Traceback (most recent call last)", "EngineDeadError", "Segmentation fault")


def say(text: str) -> None:
    print(f"test-vllm: {text}", flush=True)


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][-160:] if lines else ""


def start(port: int, log_path: Path, *, parsers: bool) -> subprocess.Popen:
    argv = [str(VENV / "bin" / "python"), str(ROOT / "tools" / "vllm" / "vllm_cli.py"), "serve", str(MODEL),
            *servers.serve_args(parsers=parsers), "--dtype", "float32", "--host", "127.0.0.1", "--port", str(port)]
    say("starting vllm " + " ".join(argv[2:]))
    log = open(log_path, "w")
    env = {**os.environ, **SERVE_ENV, "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_healthy(proc: subprocess.Popen, base_url: str, log_path: Path) -> bool:
    started = time.monotonic()
    next_note = started + PROGRESS_EVERY_S
    while time.monotonic() - started < READY_TIMEOUT_S:
        if proc.poll() is not None:
            say(f"vllm serve exited with {proc.returncode} before it was healthy; the log's end:")
            print("\n".join(log_path.read_text(errors="replace").splitlines()[-40:]), flush=True)
            return False
        if servers.healthy(base_url):
            say(f"healthy after {time.monotonic() - started:.0f} s")
            return True
        if time.monotonic() >= next_note:
            say(f"waiting for {base_url}/health ({time.monotonic() - started:.0f} s): {last_line(log_path)}")
            next_note += PROGRESS_EVERY_S
        time.sleep(0.5)
    say(f"not healthy after {READY_TIMEOUT_S} s; the log's end:")
    print("\n".join(log_path.read_text(errors="replace").splitlines()[-40:]), flush=True)
    return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(pytest_args: list[str]) -> int:
    for needed in (VENV / "bin" / "vllm", MODEL / "STAMP"):
        if not needed.exists():
            say(f"{needed} is missing: run tools/vllm/venv.sh and make_model.py first (make test-vllm does)")
            return 1
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # the rendered parser flags, and none ("plain"); started together, checked one after the other
    runs = {}
    for name, parsers in (("SPARKKIT_VLLM_URL", True), ("SPARKKIT_VLLM_PLAIN_URL", False)):
        log_path = LOG_DIR / ("serve.log" if parsers else "serve-plain.log")
        port = servers.free_port()
        runs[name] = (start(port, log_path, parsers=parsers), f"http://127.0.0.1:{port}", log_path)
    try:
        for proc, base_url, log_path in runs.values():
            if not wait_healthy(proc, base_url, log_path):
                return 1
        env = {**os.environ, **{name: base_url for name, (_, base_url, _) in runs.items()}}
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "vllm_contract",
                "tests/contract/", *pytest_args]
        code = subprocess.call(argv, cwd=ROOT, env=env)
        for proc, base_url, log_path in runs.values():
            alive = proc.poll() is None and servers.healthy(base_url)
            log = log_path.read_text(errors="replace")
            crashes = [sign for sign in CRASH_SIGNS if sign in log]
            if not alive or crashes:
                say(f"the real server at {base_url} {'died' if not alive else 'logged ' + ', '.join(crashes)} "
                    f"during the tests (log: {log_path})")
                code = code or 1
        if code == 0:
            say(f"both servers alive and healthy after the tests; {time.monotonic() - started:.0f} s from their start")
        return code
    finally:
        for proc, _, _ in runs.values():
            stop(proc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
