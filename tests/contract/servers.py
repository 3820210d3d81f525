"""The two servers of the contract tier, started with the same `vllm serve` arguments: the real vLLM
(tools/vllm/contract.py starts it, `make test-vllm`) and the rehearsal simulator (started here, as a
local process, from testbed/image/vllm).

The real server runs twice: with the parser flags the kit renders, and "plain", with none (what a
vLLM service without --reasoning-parser and --tool-call-parser answers). The parser flags are those
the kit renders for the Qwen service (`vllm-annie` of the `spark` host:
reasoning-parser qwen3, enable-auto-tool-choice, tool-call-parser qwen3_coder), read from the
inventory, so the tier follows the inventory when it changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.contract import cases

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "testbed" / "image"
SERVED_NAME = "tiny"
MAX_MODEL_LEN = 4096  # the probe suites' longest conversation fits with room to spare
INVENTORY_HOST, INVENTORY_SERVICE = "spark", "vllm-annie"
# the flags of the rendered service that shape what the API answers
PARSER_FLAGS = ("reasoning-parser", "enable-auto-tool-choice", "tool-call-parser")
# the simulator's pace: fast, so the tier spends its time on the real server
SIM_ENV = {"SIM_TTFT_MS": "5", "SIM_DECODE_TOK_S": "1000"}


@dataclass(frozen=True)
class Server:
    """One server under contract: which it is, where, and the name it serves."""

    kind: str  # "vllm" or "simulator"
    base_url: str
    model: str = SERVED_NAME
    parsers: bool = True  # started with the rendered parser flags (False: none)

    @property
    def is_sim(self) -> bool:
        return self.kind == "simulator"


def rendered_parser_flags() -> list[str]:
    """The parser flags of the inventory's Qwen service as `vllm serve` arguments (as the compose
    template renders them: --name value, --name alone for true)."""
    from sparkkit.inventory.build import build_config
    from sparkkit.inventory.layers import load_host_layers

    cfg = build_config(load_host_layers(ROOT, INVENTORY_HOST, []))
    service = next(s for s in cfg.services if s.name == INVENTORY_SERVICE)
    argv: list[str] = []
    for name, value in service.flags:
        if name not in PARSER_FLAGS or value in (False, None):
            continue
        argv += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    return argv


def serve_args(*, parsers: bool = True) -> list[str]:
    """What both servers get after `vllm serve MODEL` (host and port aside): with the rendered parser
    flags, or (``parsers=False``, the "plain" servers) with none, as a service that sets no parser."""
    return ["--served-model-name", SERVED_NAME, "--max-model-len", str(MAX_MODEL_LEN),
            *(rendered_parser_flags() if parsers else [])]


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def simulator(*, parsers: bool = True, ready_timeout_s: float = 20.0) -> Iterator[Server]:
    """The rehearsal vLLM simulator on a free port, with ``serve_args(parsers=...)`` and the
    contract's rule table."""
    args = serve_args(parsers=parsers)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(IMAGE_DIR), "SIM_RULES_JSON": cases.sim_rules_json(), **SIM_ENV}
    argv = [sys.executable, str(IMAGE_DIR / "vllm"), "serve", "sim/tiny", *args,
            "--host", "127.0.0.1", "--port", str(port)]
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not healthy(base_url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the simulator did not become healthy (exit code {proc.poll()}):\n"
                                       f"{log.read()[-2000:]}")
                time.sleep(0.05)
            yield Server("simulator", base_url, parsers=parsers)
            assert proc.poll() is None, "the simulator exited during the tests"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
