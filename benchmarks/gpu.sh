#!/usr/bin/env bash
# GPU benchmark of issue 6 on one CUDA GPU (H100/H200): parity against cuDNN nn.LSTM/GRU, then
# fwd+bwd timings of gatelab's Triton backend, cuDNN and the Python loop, and the minGRU scan.
# Finishes within 5 minutes (the Python side stops starting cases after --budget seconds).
#
#   bash benchmarks/gpu.sh                 # writes benchmarks/RESULTS-gpu.md
#   bash benchmarks/gpu.sh --dtype bf16    # extra arguments go to bench_gpu.py
#
# Needs torch with CUDA, triton, sympy and rich (pip install -e '.[gpu]'); gatelab itself is
# taken from src/ when it is not installed, so a fresh checkout runs as is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# The benchmark times real kernels: never the interpreter.
unset TRITON_INTERPRET

"$PY" - <<'PYCHECK'
import importlib.util, sys
missing = [m for m in ("torch", "triton", "sympy", "rich") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu.sh: missing Python packages: {', '.join(missing)} (pip install -e '.[gpu]')")
import torch
if not torch.cuda.is_available():
    sys.exit("gpu.sh: no CUDA GPU visible to torch; for a CPU check of the script run "
             "python benchmarks/bench_gpu.py --dry-run")
print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__)
PYCHECK

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader || true
exec timeout 295 "$PY" benchmarks/bench_gpu.py --budget 240 --out benchmarks/RESULTS-gpu.md "$@"
