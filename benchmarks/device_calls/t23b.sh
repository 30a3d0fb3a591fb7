# Whole-model chunk from chunk 12 on a warm machine (wheels already in /tmp/site).
export PYTHONPATH=/tmp/site:$PWD TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
python3 -c "import gsplat; from gsplat.cuda._backend import _C; print('gsplat ok')" 2>&1 | tail -1
python3 benchmarks/pack_frames.py unpack .devcarry/7s /tmp/7s > /dev/null || exit 1
mkdir -p /tmp/train $OUT/train; cp .devcarry/c12/MODEL_CARD.md /tmp/train/
timeout ${TBUDGET:-300} python3 -m gs4_ros.cli train fit --init-weights .devcarry/c12/gs4_nets.pt --device cuda \
  --minutes ${MIN:-4.5} --data-minutes ${DMIN:-1.2} --workers 15 --seeds 800 --frames 16 --step 5 --batch 4 \
  --sem-batch ${SB:-16} --token-weight 1.0 --fill-holes --blend --real /tmp/7s --real-frames 0:250:2 \
  --ckpt /tmp/train/ckpt.pt --out /tmp/train/gs4_nets.pt 2>&1 \
  | grep -v Warning | grep -v "step [0-9]*[1-9]0:\|step [0-9]*50:" | tail -40 | tee $OUT/fit.log
cp /tmp/train/gs4_nets.pt /tmp/train/gs4_nets.json /tmp/train/MODEL_CARD.md $OUT/train/ 2>/dev/null
ls -la $OUT/train
