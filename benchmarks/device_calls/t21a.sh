# Chunk 13: semantic-only (attention branch from chunk 12) on fresh rooms with the cache, then the head's token figures.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
mkdir -p /tmp/train $OUT/train; cp gs4_ros/weights/MODEL_CARD.md /tmp/train/
timeout ${TBUDGET:-480} python3 -m gs4_ros.cli train fit --init-weights gs4_ros/weights/gs4_nets.pt --device cuda \
  --semantic-only --sem-attention --sem-cache --fill-holes --minutes ${MIN:-7.3} --data-minutes ${DMIN:-4.3} --workers 15 \
  --seeds ${SEEDS:-5000} --frames ${FR:-3} --step 15 --sem-batch ${SB:-32} --val-seeds 960-975 --val-every ${VE:-200} --ckpt /tmp/train/ckpt.pt --out /tmp/train/gs4_nets.pt 2>&1 \
  | grep -v Warning | grep -v "semantic step [0-9]*00: token" | tail -60 | tee $OUT/fit.log
cp /tmp/train/gs4_nets.pt /tmp/train/gs4_nets.json /tmp/train/MODEL_CARD.md $OUT/train/ 2>/dev/null
free -g | head -2; nvidia-smi --query-gpu=memory.used --format=csv,noheader
timeout 110 python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --seeds 900-919 \
  --weights gs4_ros/weights/gs4_nets.pt /tmp/train/gs4_nets.pt 2>&1 | grep -v Warning | tee $OUT/tokens.log
