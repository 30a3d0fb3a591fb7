# As t27a.sh, but runs the code of .devcarry/head_src.tar (git archive of HEAD's gs4_ros,
# benchmarks, config; no weights) so edits in progress in the working tree do not travel.
R=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devcarry/whl7/*.whl || exit 1
mkdir -p /tmp/src && tar xf .devcarry/head_src.tar -C /tmp/src && cd /tmp/src || exit 1
export PYTHONPATH=/tmp/site:/tmp/src TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
(nice -n 5 python3 -c "from gsplat.cuda._backend import _C; print('gsplat ok')" > $OUT/gsplat.log 2>&1 &)
[ -f /tmp/7s/camera-intrinsics.txt ] || python3 benchmarks/pack_frames.py unpack $R/.devcarry/7s250 /tmp/7s > /dev/null || exit 1
mkdir -p /tmp/recipe; [ -d $R/.devcarry/recipe ] && cp -r $R/.devcarry/recipe/. /tmp/recipe/
timeout ${LIMIT:-575} python3 -m gs4_ros.cli train recipe --dir /tmp/recipe --device cuda --real /tmp/7s \
  --budget-minutes ${BUDGET:-9.2} 2>&1 | grep -v "gs4_ros.train.data" | tee $OUT/log.txt | tail -25
cp /tmp/recipe/recipe_state.json $OUT/ 2>/dev/null
last=$(python3 -c "import json;s=json.load(open('/tmp/recipe/recipe_state.json'))['stages'];print(s[-1]['name'] if s else '')")
[ -n "$last" ] && mkdir -p $OUT/$last && cp /tmp/recipe/$last/*.pt /tmp/recipe/$last/*.json /tmp/recipe/$last/*.md $OUT/$last/ 2>/dev/null
rm -f $OUT/$last/ckpt.pt; ls -la $OUT $OUT/$last
