# One device call of the default training recipe (gs4_ros/train/recipe.yaml): the run
# folder travels as .devcarry/recipe (recipe_state.json + the last stage's weights and
# .json); stages run while they fit in 9.2 minutes; the state and the newest stage's
# files come back under $OUT: copy them into .devcarry/recipe for the next call and drop
# the older stage folders there (only the newest is read; the carry limit is 64 MiB).
# Carry: .devcarry/whl7 .devcarry/scripts .devcarry/7s250 .devcarry/recipe (frames 0-249 only,
# which the recipe's 0:250:2 uses; the 500-frame pack would put the call over 64 MiB)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devcarry/whl7/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
(nice -n 5 python3 -c "from gsplat.cuda._backend import _C; print('gsplat ok')" > $OUT/gsplat.log 2>&1 &)
[ -f /tmp/7s/camera-intrinsics.txt ] || python3 benchmarks/pack_frames.py unpack .devcarry/7s250 /tmp/7s > /dev/null || exit 1
mkdir -p /tmp/recipe; [ -d .devcarry/recipe ] && cp -r .devcarry/recipe/. /tmp/recipe/
timeout ${LIMIT:-575} python3 -m gs4_ros.cli train recipe --dir /tmp/recipe --device cuda --real /tmp/7s \
  --budget-minutes ${BUDGET:-9.2} 2>&1 | grep -v "gs4_ros.train.data" | tee $OUT/log.txt | tail -25
cp /tmp/recipe/recipe_state.json $OUT/ 2>/dev/null
last=$(python3 -c "import json;s=json.load(open('/tmp/recipe/recipe_state.json'))['stages'];print(s[-1]['name'] if s else '')")
[ -n "$last" ] && mkdir -p $OUT/$last && cp /tmp/recipe/$last/*.pt /tmp/recipe/$last/*.json /tmp/recipe/$last/*.md $OUT/$last/ 2>/dev/null
rm -f $OUT/$last/ckpt.pt; ls -la $OUT $OUT/$last
