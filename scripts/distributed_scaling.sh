#!/bin/bash
# Steps/s of data-parallel training: 1 process vs 2 (torchrun, gloo) on the same global batch.
# Usage (from any empty folder; the runs are written there):
#   scripts/distributed_scaling.sh gs 200 --batch-cameras 4
#   REPS=1 scripts/distributed_scaling.sh nerf 60 --set batch_rays=2048 --set max_batch_rays=2048 --set eval_views=2
# Prints one line per run: name | load average before it | the run's summary line
# (steps / train_seconds from metrics.json). SCENE defaults to the sample scene (100x100 Blender).
set -euo pipefail
PY=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
D=${SCENE:-$($PY -c 'from raysplat.datasets import sample_scene; print(sample_scene("blender", progress=False))')}
TR="$PY -m torch.distributed.run --standalone"
run() {
  name=$1; shift
  l=$(uptime | sed 's/.*average: //')
  "$@" > "$name.log" 2>&1
  echo "$name | $l | $(grep -v '^\*\|OMP' "$name.log" | tail -1)"
}
m=$1; S=$2; shift 2
for rep in ${REPS:-1 2}; do
  run "${m}_1p_t1_$rep" $PY -m raysplat train "$m" "$D" --steps "$S" --frames 0 --threads 1 --out "${m}_1p_t1_$rep" --force -q "$@"
  run "${m}_2p_t1_$rep" $TR --nproc_per_node 2 -m raysplat train "$m" "$D" --steps "$S" --frames 0 --threads 1 --out "${m}_2p_t1_$rep" --force -q "$@"
  run "${m}_1p_t2_$rep" $PY -m raysplat train "$m" "$D" --steps "$S" --frames 0 --threads 2 --out "${m}_1p_t2_$rep" --force -q "$@"
done
