#!/usr/bin/env bash
# The GPU proof in one command (issue 14 §2). On a CUDA machine with no network:
#   1. installs raysplat from the abi3 wheel in dist/ (built beforehand with `make wheel`) into a
#      scratch folder on PYTHONPATH, so it runs on the machine's own python/torch (and
#      gsplat/nerfacc when they are importable there; PYTHON=... picks the interpreter);
#   2. runs the CUDA tests (`pytest -m cuda tests/test_cuda.py`: every op through backend auto and
#      torch, the forced nerfacc / gsplat paths when they load, packed meta, viewmat gradients and
#      the ortho / fisheye cameras), then tests/test_cuda_trainers.py (every trainer a few steps
#      with --device cuda; NeRF, NeRDF and text-to-3D also with --precision bf16 / fp16, NeRF's
#      mixed-precision runs compared with fp32; `raysplat stitch --device cuda`);
#   3. runs benches/gpu.py (each op and a training step: raysplat vs nerfacc vs gsplat vs the torch
#      twin; raysplat's own CUDA dispatch to nerfacc/gsplat included: packed volume rendering,
#      importance sampling, grid marching, packed + pose-gradient rasterization; NeRF training
#      steps/s at fp32, bf16 and fp16), each peer comparison capped in time, and writes the table to
#      $OUT/gpu_table.txt (or gpu_results/gpu_table.txt when $OUT is unset).
# Without CUDA it says so and exits 0 (GPU_CHECK_DRY_RUN=1 runs the same steps on CPU).
# Budget: under 4 minutes on one modern GPU: the whole script stops within GPU_CHECK_TOTAL = 235 s,
# and each step has its own cap on top (peer probe <= 20 s, which a first JIT build of a peer may
# outlast: it then falls back; op tests <= 60 s, trainer tests <= 120 s, bench <= 100 s), cut to the
# time left (hard timeouts; the bench starts no case after its cap minus 30 s). The probe's load is
# cached by torch for later steps. GPU_CHECK_CAP_SCALE multiplies every cap and the total (default
# 1; for a dry run on a slow or shared CPU, where the twins run far slower than on a GPU).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
RESULTS="${OUT:-gpu_results}"
mkdir -p "$RESULTS"

SCALE="${GPU_CHECK_CAP_SCALE:-1}"
TOTAL=$(( ${GPU_CHECK_TOTAL:-235} * SCALE ))
START=$SECONDS
# cap N: N seconds (times SCALE), or what is left of TOTAL when that is less (at least 1)
cap() {
    local c=$(( $1 * SCALE )) left=$(( TOTAL - (SECONDS - START) ))
    [ "$left" -lt "$c" ] && c=$left
    [ "$c" -lt 1 ] && c=1
    echo "$c"
}

DEVICE=cuda
TINY=""
if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
    # the same steps on CPU (tests against the torch twins, tiny bench): proves the script here
    DEVICE=cpu
    TINY="--tiny"
    export RAYSPLAT_TEST_DEVICE=cpu
elif ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (or no torch) on this machine; nothing to check." | tee "$RESULTS/gpu_table.txt"
    exit 0
fi

# raysplat from the wheel, installed into a scratch folder put first on PYTHONPATH (no venv, no
# network, no dependencies: torch/numpy are the machine's own)
WHEEL=$(ls -t dist/raysplat-*.whl 2>/dev/null | head -n 1)
if [ -n "$WHEEL" ]; then
    SITE="${TMPDIR:-/tmp}/raysplat-gpu-check-site"
    rm -rf "$SITE"
    # pip when it is there and accepts the wheel's tags, else unzip it (a wheel is a zip file)
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "$WHEEL" 2>/dev/null \
        || "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$WHEEL" "$SITE" \
        || exit 2
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
elif ! "$PY" -c "import raysplat._core" 2>/dev/null; then
    echo "gpu_check: no wheel in dist/ (run 'make wheel' first) and raysplat is not importable" >&2
    exit 2
fi
"$PY" -c "import raysplat, torch; print('raysplat', raysplat.__version__, 'from', raysplat.__file__); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, \
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" \
    | tee "$RESULTS/gpu_env.txt"
for peer in gsplat nerfacc; do
    if ver=$("$PY" -c "import $peer; print($peer.__version__)" 2>/dev/null); then
        echo "$peer $ver" | tee -a "$RESULTS/gpu_env.txt"
    else
        echo "$peer: not importable (skipped)" | tee -a "$RESULTS/gpu_env.txt"
    fi
done
# what raysplat's CUDA dispatch will use: a peer counts only when its CUDA extension loads (a
# JIT build of nerfacc/gsplat here is capped so that it cannot eat the whole budget)
if [ "$DEVICE" = cuda ]; then
    timeout "$(cap 20)" "$PY" -W ignore -c "from raysplat import _peers; \
print('dispatch:', ', '.join(f'{k}: {v}' for k, v in _peers.status().items()))" 2>&1 \
        | tee -a "$RESULTS/gpu_env.txt"
fi

status=0
timeout "$(cap 60)" "$PY" -m pytest -q -m cuda -p no:cacheprovider -W default tests/test_cuda.py \
    --junitxml="$RESULTS/cuda_tests.xml" 2>&1 | tee "$RESULTS/cuda_tests.txt" | tail -n 40
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# the trainers and CLIs end to end on the device (NeRF x 3 samplers, 3DGS, text-to-3D, NeRDF, texture,
# stitch; mixed precision), a few steps each, through the default dispatch (the twins' path is
# covered op by op above)
KEYS="auto"
[ "$DEVICE" = cpu ] && KEYS="torch"
timeout "$(cap 120)" "$PY" -m pytest -q -m cuda -p no:cacheprovider -W default tests/test_cuda_trainers.py -k "$KEYS" \
    --junitxml="$RESULTS/cuda_trainers.xml" 2>&1 | tee "$RESULTS/cuda_trainers.txt" | tail -n 20
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

BENCH_CAP=$(cap 100)
BENCH_BUDGET=$(( BENCH_CAP > 40 ? BENCH_CAP - 30 : BENCH_CAP / 2 ))
timeout "$BENCH_CAP" "$PY" benches/gpu.py --device "$DEVICE" $TINY --time-cap 3 --budget "$BENCH_BUDGET" --out "$RESULTS/gpu_table.txt" \
    --json "$RESULTS/gpu_table.json" 2>&1 | tee "$RESULTS/gpu_bench.log" | tail -n 60
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "gpu_check: tests + bench finished with status $status in $(( SECONDS - START )) s; table in $RESULTS/gpu_table.txt"
exit $status
