# Smoke run of the default training recipe on the GPU, every time box scaled by 0.035, to
# see that each stage's arguments run on CUDA (no real frames: the --real pair is dropped).
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
mkdir -p $OUT/r
timeout 230 python3 -m gs4_ros.cli train recipe --dir /tmp/recipe --device cuda --time-scale 0.035 2>&1 \
  | grep -v "gs4_ros.train.data" | tee $OUT/r/log.txt | grep -i "recipe\|error\|trained\|segmenter:\|Traceback" | tail -30
cp /tmp/recipe/recipe_state.json $OUT/r/ 2>/dev/null; python3 -m gs4_ros.cli train recipe --dir /tmp/recipe --list 2>&1 | cut -c1-60
