# Forty-second session, the slim form of t42a.sh for the device time left after five
# refused starts: one call (~8 minutes) on tracking.prediction_prior alone (new: a prior
# holding the pose at the motion model's prediction in the directions a view leaves open;
# room 918's striped wall on the CPU: geometric 3.10 -> 0.25 cm at 0.1, networks 20.04 ->
# 0.22 cm at 0.03) on the GPU's device solver: held-out rooms 900-919 with the geometric
# initialiser and the shipped networks, 0 / 0.03, and 7-Scenes redkitchen 0-249 on the v0
# defaults, 0 / 0.03 / 0.1, 640x480, held out every 10th frame.
#   [LIMIT=seconds per sweep, default 500] bash benchmarks/device_calls/t42c.sh   (carry .devcarry/whl7 .devcarry/gsplat_so .devcarry/7s250)
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
python3 benchmarks/pack_frames.py unpack .devcarry/7s250 /tmp/7s250 > /tmp/unpack.log 2>&1 || cat /tmp/unpack.log
prior() {   # first last
  timeout ${LIMIT:-500} python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
    $(for s in $(seq $1 $2); do echo --dataset synthetic:seed=$s,frames=40; done) \
    --variant geo: --variant geo-p03:tracking.prediction_prior=0.03 \
    --variant net:initializer=network --variant net-p03:initializer=network,tracking.prediction_prior=0.03 \
    2>&1 | grep -v Warning > $OUT/sweep_prior_$1-$2.txt
}
prior 900 904 &
prior 905 909 &
prior 910 914 &
prior 915 919 &
timeout ${LIMIT:-500} python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
  --dataset 7scenes:/tmp/7s250 --frames 0:250 --variant v0: --variant v0-p03:tracking.prediction_prior=0.03 \
  --variant v0-p1:tracking.prediction_prior=0.1 2>&1 | grep -v Warning > $OUT/sweep_7s_0-249.txt
wait
for f in $OUT/*.txt; do echo "== $f"; grep -A12 "variant  " $f | tail -n 14; done
