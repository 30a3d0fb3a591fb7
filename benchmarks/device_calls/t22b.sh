# Resume the whole-model chunk (same machine: its /tmp; else the checkpoint carried back), then
# token figures against chunk 12, speed and the GPU tests.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
[ -f /tmp/7s/camera-intrinsics.txt ] || python3 benchmarks/pack_frames.py unpack .devcarry/7s /tmp/7s > /dev/null || exit 1
mkdir -p /tmp/train $OUT/train
[ -f /tmp/train/ckpt.pt ] || cp .devcarry/r1/ckpt.pt .devcarry/r1/MODEL_CARD.md /tmp/train/ || exit 1
timeout ${TBUDGET:-400} python3 -m gs4_ros.cli train fit --resume --device cuda \
  --minutes ${MIN:-6.2} --data-minutes ${DMIN:-1.5} --workers 15 --seeds 800 --frames 16 --step 5 --batch 4 \
  --sem-batch ${SB:-16} --token-weight 1.0 --fill-holes --blend --real /tmp/7s --real-frames 0:250:2 \
  --ckpt /tmp/train/ckpt.pt --out /tmp/train/gs4_nets.pt 2>&1 \
  | grep -v Warning | grep -v "step [0-9]*[1-9]0:\|step [0-9]*50:" | tail -40 | tee $OUT/fit.log
cp /tmp/train/gs4_nets.pt /tmp/train/gs4_nets.json /tmp/train/MODEL_CARD.md /tmp/train/ckpt.pt $OUT/train/ 2>/dev/null
timeout 80 python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --seeds 900-919 \
  --weights .devcarry/c12/gs4_nets.pt /tmp/train/gs4_nets.pt 2>&1 | grep -v Warning | tee $OUT/tokens.log
timeout 35 python3 benchmarks/nets_speed.py --device cuda --weights /tmp/train/gs4_nets.pt 2>&1 | grep -v Warning | tail -8 | tee -a $OUT/speed.log
timeout 50 python3 -m pytest -q -p no:cacheprovider test/test_nets.py -k "cuda or gpu" 2>&1 | tail -4 | tee $OUT/pytest.log
