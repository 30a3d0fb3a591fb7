# t30a.sh (the recipe as one background run kept across calls on the warm machine) with
# two changes: gsplat's CUDA module comes prebuilt where .devcarry/gsplat_so holds one for
# this torch/gsplat/GPU (gsplat_prebuilt.sh; else it compiles, and the first call returns
# the module under $OUT/gsplat_so to carry from then on), and a run folder carried as
# .devcarry/recipe (recipe_state.json + the newest stage's files) is continued, so a
# recipe can span sessions. The stages run while they fit in BUDGET minutes (default 26).
# $OUT/gsplat_so comes back with the first call only: copy it into .devcarry/gsplat_so.
# Carry: .devcarry/whl7 .devcarry/7s250 [.devcarry/gsplat_so] [.devcarry/recipe]
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devcarry/whl7/*.whl || exit 1
export PYTHONPATH=/tmp/site TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ ! -f /tmp/recipe.pid ]; then
  source benchmarks/device_calls/gsplat_prebuilt.sh
  python3 benchmarks/pack_frames.py unpack .devcarry/7s250 /tmp/7s > /dev/null || exit 1
  # Compiled (or loaded) before the recipe starts, at full CPU, so that no stage's time box
  # pays for it (in t30a.sh whole-1 waited 115 s of its 7.3 minutes for the compile).
  t=$(date +%s); (cd /tmp && MAX_JOBS=16 python3 -c "from gsplat.cuda._backend import _C; print('gsplat ok')") 2>&1 | tail -2
  echo "gsplat ready in $(( $(date +%s) - t )) s"
  [ -f .devcarry/gsplat_so/stamp.txt ] || gsplat_export_build $OUT/gsplat_so
  mkdir -p /tmp/src /tmp/recipe && cp -r gs4_ros /tmp/src/
  [ -d .devcarry/recipe ] && cp -r .devcarry/recipe/. /tmp/recipe/ && echo "continuing $(ls .devcarry/recipe | tr '\n' ' ')"
  PYTHONPATH=/tmp/site:/tmp/src setsid nohup python3 -m gs4_ros.cli train recipe --dir /tmp/recipe --device cuda \
    --real /tmp/7s --budget-minutes ${BUDGET:-26} ${RECIPE:+--recipe $RECIPE} > /tmp/recipe.log 2>&1 < /dev/null &
  echo $! > /tmp/recipe.pid
  echo "started recipe pid $(cat /tmp/recipe.pid)"
fi
pid=$(cat /tmp/recipe.pid); t0=$(date +%s)
while kill -0 $pid 2> /dev/null && [ $(( $(date +%s) - t0 )) -lt ${WAIT:-560} ]; do sleep 5; done
kill -0 $pid 2> /dev/null && echo "recipe still running after $(( $(date +%s) - t0 )) s" || echo "recipe finished"
grep -v "gs4_ros.train.data" /tmp/recipe.log > $OUT/log.txt; tail -30 $OUT/log.txt
cp /tmp/recipe/recipe_state.json $OUT/ 2> /dev/null
# $OUT brings back 8 files: the state, the log, and the newest two stages' weights and records.
for n in $(python3 -c "import json; print(' '.join(s['name'] for s in json.load(open('/tmp/recipe/recipe_state.json'))['stages'][-${KEEP:-2}:]))" 2> /dev/null); do
  mkdir -p $OUT/$n && cp /tmp/recipe/$n/*.pt /tmp/recipe/$n/*.json $OUT/$n/ 2> /dev/null; rm -f $OUT/$n/ckpt.pt
done
ls -la $OUT/*/ 2> /dev/null
