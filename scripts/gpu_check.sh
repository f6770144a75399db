#!/usr/bin/env bash
# The GPU proof in one command (issue 14 §2). On a CUDA machine with no network:
#   1. installs raysplat from the abi3 wheel in dist/ (built beforehand with `make wheel`) into a
#      throw-away venv that sees the machine's own python/torch (and gsplat/nerfacc if present);
#   2. runs the CUDA tests (`pytest -m cuda tests/test_cuda.py`);
#   3. runs benches/gpu.py (each op and a training step: raysplat vs nerfacc vs gsplat vs the torch
#      twin), each peer comparison capped in time, and writes the table to
#      $OUT/gpu_table.txt (or gpu_results/gpu_table.txt when $OUT is unset).
# Without CUDA it says so and exits 0. Budget: under 4 minutes on one modern GPU.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
RESULTS="${OUT:-gpu_results}"
mkdir -p "$RESULTS"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (or no torch) on this machine; nothing to check." | tee "$RESULTS/gpu_table.txt"
    exit 0
fi

WHEEL=$(ls -t dist/raysplat-*abi3*.whl dist/raysplat-*.whl 2>/dev/null | head -n 1)
VENV="${TMPDIR:-/tmp}/raysplat-gpu-venv"
if ! "$PY" -c "import raysplat._core" 2>/dev/null; then
    if [ -z "$WHEEL" ]; then
        echo "gpu_check: no wheel in dist/ (run 'make wheel' first) and raysplat is not importable" >&2
        exit 2
    fi
    rm -rf "$VENV"
    "$PY" -m venv --system-site-packages "$VENV" || exit 2
    "$VENV/bin/python" -m pip install --no-index --no-deps --quiet "$WHEEL" || exit 2
    PY="$VENV/bin/python"
fi
# run against the installed wheel, not the source tree's python/ (which has no _core there)
"$PY" -c "import raysplat, torch; print('raysplat', raysplat.__version__, 'from', raysplat.__file__); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
    | tee "$RESULTS/gpu_env.txt"
for peer in gsplat nerfacc; do
    "$PY" -c "import $peer; print('$peer', $peer.__version__)" 2>/dev/null | tee -a "$RESULTS/gpu_env.txt" \
        || echo "$peer: not importable (skipped)" | tee -a "$RESULTS/gpu_env.txt"
done

status=0
timeout 120 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py \
    --junitxml="$RESULTS/cuda_tests.xml" 2>&1 | tee "$RESULTS/cuda_tests.txt" | tail -n 40
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 150 "$PY" benches/gpu.py --device cuda --time-cap 8 --out "$RESULTS/gpu_table.txt" \
    --json "$RESULTS/gpu_table.json" 2>&1 | tee "$RESULTS/gpu_bench.log" | tail -n 60
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "gpu_check: tests + bench finished with status $status; table in $RESULTS/gpu_table.txt"
exit $status
