# Keyframe segmenter, first chunk on the GPU: rooms rendered by 14 workers while it trains.
# gsplat's kernels compile in the background (niced) into .devcarry/torch_ext, kept on a warm machine.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devcarry/whl7/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD TORCH_EXTENSIONS_DIR=$PWD/.devcarry/torch_ext PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
(nice -n 19 python3 -c "from gsplat.cuda._backend import _C; print('gsplat ok')" > $OUT/gsplat.log 2>&1 &)
mkdir -p $OUT/seg
timeout 575 python3 -m gs4_ros.cli train segmenter --device cuda --minutes 8.9 --workers 14 --seeds 10000 \
  --first-seed 20000 --frames 3 --step 15 --batch 16 --lr 2e-3 --val-seeds 960-999 --val-every 500 \
  --out $OUT/seg/gs4_segmenter.pt 2>&1 | grep -v "gs4_ros.train.data" | tee $OUT/seg/train.log | tail -40
cat $OUT/gsplat.log; free -g | head -2
