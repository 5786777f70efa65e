#!/usr/bin/env bash
# The standing GPU check, in one command for a lent GPU (see BENCHMARKS.md, "Deep teachers at GPU speed" and
# "--preset ant on one GPU"): a short `deepdistill pipeline --preset ant`, then
# benchmarks/teacher_speed_gpu.py (ours against the reference, depths 4 to 1,024) in the time left.
# Results land in $OUT (at most 8 files). Wheels in .whl/ (packages the GPU image lacks) are installed first.
#
#   LIMIT=560 bash benchmarks/gpu_standing.sh                        # on the GPU machine
#   WHEELS=none OUT=/tmp/dry LIMIT=400 ANT_ARGS="--preset smoke" \
#     SPEED_ARGS="--tasks point_maze --depths 4 --batch 16 --envs 8 --quick" bash benchmarks/gpu_standing.sh   # CPU dry run
set -u
T0=$(date +%s)
LIMIT=${LIMIT:-560}
OUT=${OUT:-/tmp/gpu_standing}
WORK=${WORK:-/tmp/gpu_standing_work}
ANT_ARGS=${ANT_ARGS:---preset ant --teacher-env-steps 300000 --distill-steps 1000 --episodes 32}
ANT_S=${ANT_S:-300}
SPEED_ARGS=${SPEED_ARGS:---tasks ant_big_maze --batch 256 --depths 4 64 256 1024 --variants scan reference}
mkdir -p "$OUT" "$WORK"
WHEELS=${WHEELS:-.whl}  # WHEELS=none: use the installed packages
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS"/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH="$WORK/site"
fi
# the repository root is the package `deepdistill` (pyproject's package-dir)
mkdir -p "$WORK/pkg" && ln -sfn "$PWD" "$WORK/pkg/deepdistill"
export PYTHONPATH="$WORK/pkg${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
{
  date -u +"%Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import jax, brax, mujoco, onnxruntime; print('jax', jax.__version__, jax.devices(), 'brax', brax.__version__, 'mujoco', mujoco.__version__, 'onnxruntime', onnxruntime.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

echo "== pipeline $ANT_ARGS (at most $ANT_S s)"
t=$(date +%s)
rm -rf "$WORK/ant"
timeout -s INT "$ANT_S" python3 -m deepdistill.pipeline pipeline $ANT_ARGS --out "$WORK/ant" --no-progress 2>&1 | tee "$OUT/ant.log"
echo "pipeline exit ${PIPESTATUS[0]} after $(( $(date +%s) - t )) s" | tee -a "$OUT/ant.log"
# everything but checkpoints and the viewer pages (small files: configs, metrics, ONNX, report, plots)
tar czf "$OUT/ant_run.tgz" -C "$WORK" --exclude=checkpoints --exclude='*.html' ant 2>/dev/null

left=$(( LIMIT - ($(date +%s) - T0) - 25 ))
echo "== teacher speed ($left s)"
if [ "$left" -gt 30 ]; then
  python3 benchmarks/teacher_speed_gpu.py $SPEED_ARGS --out "$WORK/speed" --budget-s "$left" 2>&1 | tee "$OUT/speed.log"
  cp "$WORK/speed/results.json" "$WORK/speed/rows.jsonl" "$OUT/" 2>/dev/null
fi
echo "total $(( $(date +%s) - T0 )) s"
