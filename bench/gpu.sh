#!/usr/bin/env bash
# MedGemma 4B throughput on one NVIDIA GPU, offline: random weights with the exact architecture
# (bench/gpu_bench.py), no download, no tokenizer. Prints one table and saves it.
#
#   bench/gpu.sh [gpu_bench.py options...]     e.g. bench/gpu.sh --new-tokens 64
#
# Environment: RESULTS (output file; default .medgraph/bench/gpu-<host>-<time>.txt),
# BUDGET_S (time budget of the benchmark itself, default 400 s; a hard stop follows 45 s later).
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu.sh: nvidia-smi not found; this benchmark needs an NVIDIA GPU and its driver." >&2
    echo "        (For a CPU check of the mechanics: python bench/gpu_bench.py --device cpu --tiny)" >&2
    exit 1
fi
if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; then
    echo "gpu.sh: nvidia-smi cannot talk to the driver; is the GPU visible to this machine?" >&2
    exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
    echo "gpu.sh: no .venv here; running 'make install' (needs the package index or a local wheelhouse)"
    if ! make install; then
        echo "gpu.sh: 'make install' failed. Offline, create .venv on a machine with the same" >&2
        echo "        OS and CUDA, or install torch (CUDA build) and transformers into .venv by hand." >&2
        exit 1
    fi
fi
PYTHON=.venv/bin/python

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: torch in .venv cannot use the GPU ($("$PYTHON" -c 'import torch; print(torch.__version__)'))." >&2
    echo "        Install a CUDA build of torch into .venv, e.g. .venv/bin/pip install torch" >&2
    echo "        --index-url https://download.pytorch.org/whl/cu124 (or from a local wheel)." >&2
    exit 1
fi

BUDGET_S=${BUDGET_S:-400}
mkdir -p .medgraph/bench
RESULTS=${RESULTS:-.medgraph/bench/gpu-$(hostname -s)-$(date +%Y%m%d-%H%M%S).txt}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

echo "gpu.sh: writing $RESULTS"
{
    echo "# bench/gpu.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname -s)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} >"$RESULTS"
# SIGTERM at the hard stop makes gpu_bench.py print the cells it has finished.
set +e
timeout --signal=TERM --kill-after=10 $((BUDGET_S + 45)) \
    "$PYTHON" bench/gpu_bench.py --device cuda --budget-s "$BUDGET_S" "$@" 2>&1 | tee -a "$RESULTS"
status=${PIPESTATUS[0]}
set -e
echo "gpu.sh: results in $RESULTS"
exit "$status"
