# Semantic-only chunk adding the attention branch, then the head's token figures, speed and GPU tests.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .devcarry/whl7/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p /tmp/train $OUT/train
timeout ${TBUDGET:-440} python3 -m gs4_ros.cli train fit --init-weights gs4_ros/weights/gs4_nets.pt --device cuda \
  --semantic-only ${BRANCHES:---sem-attention} --fill-holes --minutes ${MIN:-6.8} --data-minutes ${DMIN:-2.5} --workers 15 \
  --seeds 2500 --frames 8 --step 10 --sem-batch 32 --ckpt /tmp/train/ckpt.pt --out /tmp/train/gs4_nets.pt 2>&1 \
  | grep -v Warning | tail -25 | tee $OUT/fit.log
cp /tmp/train/gs4_nets.pt /tmp/train/gs4_nets.json /tmp/train/MODEL_CARD.md /tmp/train/ckpt.pt $OUT/train/ 2>/dev/null
timeout 100 python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --seeds 900-919 \
  --weights gs4_ros/weights/gs4_nets.pt /tmp/train/gs4_nets.pt 2>&1 | grep -v Warning | tee $OUT/tokens.log
for w in gs4_ros/weights/gs4_nets.pt /tmp/train/gs4_nets.pt; do
  timeout 40 python3 benchmarks/nets_speed.py --device cuda --weights $w 2>&1 | grep -v Warning | tail -6 | tee -a $OUT/speed.log
done
timeout 60 python3 -m pytest -q -p no:cacheprovider test/test_nets.py -k "cuda or gpu or attention" 2>&1 | tail -4 | tee $OUT/pytest.log
