# Forty-second session, second call on the machine t42a.sh warmed (its job runs on
# beside this): 7-Scenes redkitchen 0-499 at 640x480, held-out every 10th frame, the v0
# geometric defaults, the shipped (calibrated) networks on the defaults and with
# `config/map_quality.yaml`, in one table. The README's 0-499 row is still from chunk 11's
# networks (20.83 dB with 19731 Gaussians against 18.01 with 20084, t19b.sh); #3 asks +2 dB
# over v0 with no more Gaussians, at most 150k per 500 frames.
#   bash benchmarks/device_calls/t42b.sh   (carry .devcarry/7s250b)
export PYTHONPATH=/tmp/site:$PWD TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
D=/tmp/7s500
python3 benchmarks/pack_frames.py unpack .devcarry/7s250b $D || exit 1
[ "$(ls $D/frame-*.depth.png | wc -l)" = 500 ] || { echo "expected 500 frames in $D"; cat /tmp/unpack_a.log; exit 1; }
timeout 560 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
  --dataset 7scenes:$D --frames 0:500 --variant v0: --variant net:initializer=network \
  --variant net-mq:config=config/map_quality.yaml,initializer=network 2>&1 | grep -v Warning | tee $OUT/sweep_7s_0-499.txt
tail -n 3 /tmp/bg.log
