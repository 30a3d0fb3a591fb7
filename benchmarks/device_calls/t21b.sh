# Chunk 13 with validation rooms, then token figures, the predictor's GPU cost and the GPU tests.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
mkdir -p /tmp/train $OUT/train; cp gs4_ros/weights/MODEL_CARD.md /tmp/train/
timeout ${TBUDGET:-335} python3 -m gs4_ros.cli train fit --init-weights gs4_ros/weights/gs4_nets.pt --device cuda \
  --semantic-only --sem-attention --sem-cache --fill-holes --minutes ${MIN:-5.3} --data-minutes ${DMIN:-3.0} --workers 15 \
  --seeds ${SEEDS:-5000} --frames 3 --step 15 --sem-batch 32 --val-seeds 960-975 --val-every ${VE:-200} \
  --ckpt /tmp/train/ckpt.pt --out /tmp/train/gs4_nets.pt 2>&1 \
  | grep -v Warning | grep -v "semantic step [0-9]*00: token" | tail -60 | tee $OUT/fit.log
cp /tmp/train/gs4_nets.pt /tmp/train/gs4_nets.json /tmp/train/MODEL_CARD.md $OUT/train/ 2>/dev/null
timeout 75 python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --seeds 900-919 \
  --weights gs4_ros/weights/gs4_nets.pt /tmp/train/gs4_nets.pt 2>&1 | grep -v Warning | tee $OUT/tokens.log
timeout 30 python3 benchmarks/nets_speed.py --device cuda --weights /tmp/train/gs4_nets.pt 2>&1 | grep -v Warning | tail -8 | tee $OUT/speed.log
timeout 50 python3 -m pytest -q -p no:cacheprovider test/test_nets.py -k "cuda or gpu" 2>&1 | tail -4 | tee $OUT/pytest.log
