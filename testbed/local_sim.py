"""The rehearsal vLLM simulator (testbed/image/vllm) as a local process: no Docker, no image.

    from testbed.local_sim import vllm_sim

    with vllm_sim(env={"SIM_TTFT_MS": "5"}) as base_url:   # http://127.0.0.1:PORT
        ...

It answers with the image's rule table (image/rules.json) unless ``env`` names another; the
``SIM_*`` variables are those of testbed/README.md. ``flags`` are vLLM's own flags (default: the
parsers the inventory renders for vllm-annie, ANNIE_FLAGS; ``()`` for a server started without
any). Stdlib only, so tests and benches can share it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

IMAGE_DIR = Path(__file__).resolve().parent / "image"
# what inventory/group_vars/all.yml renders for vllm-annie (Qwen3.5)
ANNIE_FLAGS = ("--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder")
# and for vllm-nemotron (the nano_v3 plugin file itself is not needed by the simulator)
NEMOTRON_FLAGS = ("--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder", "--reasoning-parser-plugin",
                  "/plugins/nano_v3_reasoning_parser.py", "--reasoning-parser", "nano_v3")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def vllm_sim(*, model: str = "sim/model", served_name: str | None = None, env: dict[str, str] | None = None,
             flags: tuple[str, ...] = ANNIE_FLAGS, ready_timeout_s: float = 15.0) -> Iterator[str]:
    """Start `vllm serve MODEL` on a free local port, wait for /health, yield its base URL, stop it."""
    port = free_port()
    environ = {**os.environ, "PYTHONPATH": str(IMAGE_DIR), "SIM_RULES_FILE": str(IMAGE_DIR / "rules.json"),
               **(env or {})}
    argv = [sys.executable, str(IMAGE_DIR / "vllm"), "serve", model, "--host", "127.0.0.1", "--port", str(port)]
    if served_name:
        argv += ["--served-model-name", served_name]
    argv += list(flags)
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ready_timeout_s
            while not _healthy(f"{base_url}/health"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"vLLM simulator did not become healthy at {base_url} "
                                       f"(exit code {proc.poll()}):\n{log.read()[-2000:]}")
                time.sleep(0.05)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
