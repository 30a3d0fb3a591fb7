# The recipe's segmenter stage (the shipped segmenter's own command, gs4_segmenter.json),
# run again to see whether the command reproduces the shipped file's figures. No gsplat
# compile: the segmenter renders nothing on the GPU.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devcarry/whl7/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p $OUT/seg
timeout ${LIMIT:-585} python3 -m gs4_ros.cli train segmenter --device cuda --minutes 8.9 --workers 14 --seeds 10000 \
  --first-seed 20000 --frames 3 --step 15 --batch 16 --lr 2e-3 --val-seeds 960-999 --val-every 500 \
  --out $OUT/seg/gs4_segmenter.pt 2>&1 | grep -v "gs4_ros.train.data" | tee $OUT/seg/log.txt | tail -20
ls -la $OUT/seg
