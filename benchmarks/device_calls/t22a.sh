# The shipped two-head file's GPU cost; then a whole-model chunk from chunk 12 (the backbone
# last trained in chunk 10) with more labelled frames per step.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
timeout 40 python3 benchmarks/nets_speed.py --device cuda --weights gs4_ros/weights/gs4_nets.pt 2>&1 | grep -v Warning | tail -8 | tee $OUT/speed.log
timeout 60 python3 -m pytest -q -p no:cacheprovider test/test_nets.py -k "cuda or gpu" 2>&1 | tail -4 | tee $OUT/pytest.log
python3 benchmarks/pack_frames.py unpack .devcarry/7s /tmp/7s > /dev/null || exit 1
mkdir -p /tmp/train $OUT/train; cp .devcarry/c12/MODEL_CARD.md /tmp/train/
timeout ${TBUDGET:-300} python3 -m gs4_ros.cli train fit --init-weights .devcarry/c12/gs4_nets.pt --device cuda \
  --minutes ${MIN:-4.5} --data-minutes ${DMIN:-1.2} --workers 15 --seeds 800 --frames 16 --step 5 --batch 4 \
  --sem-batch ${SB:-16} --token-weight 1.0 --fill-holes --blend --real /tmp/7s --real-frames 0:250:2 \
  --ckpt /tmp/train/ckpt.pt --out /tmp/train/gs4_nets.pt 2>&1 \
  | grep -v Warning | grep -v "step [0-9]*[1-9]0:\|step [0-9]*50:" | tail -40 | tee $OUT/fit.log
cp /tmp/train/gs4_nets.pt /tmp/train/gs4_nets.json /tmp/train/MODEL_CARD.md /tmp/train/ckpt.pt $OUT/train/ 2>/dev/null
ls -la $OUT/train
