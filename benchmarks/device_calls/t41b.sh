# The recipe's new calibrate stage (gs4 train calibrate: one factor on the predicted
# scales, chosen on validation rooms 960-967 by the `+pruning` path) on the GPU, for the
# shipped file's parent (the shipped file was calibrated on the CPU in the forty-first
# session; --undo gives back its parent) and the fresh recipe file (fresh39/refiner),
# then both calibrated files
# by the head (`+pruning`) and after the default end pass (`+segmenter+head`) over the
# held-out rooms 900-919, beside the same command's H100 records of the uncalibrated
# files (fresh39/gpu_*_900-919.json.gz, gpu_*_seg.json.gz). Question: does the fresh
# file's 0.37 cm depth gap close once each file has its own factor (forty-first session:
# both render depth better at x0.94 on the CPU)?
# A job for bg.sh: JOB=benchmarks/device_calls/t41b.sh bash benchmarks/device_calls/bg.sh
# Carry: .devcarry/whl7 .devcarry/gsplat_so
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
source benchmarks/device_calls/compare.sh
F=benchmarks/device_calls/fresh39/refiner/gs4_nets.pt
mkdir -p $OUT/ship_cal $OUT/fresh_cal $OUT/ev
cal() {   # weights, out folder
  python3 -m gs4_ros.cli train calibrate --weights $1 --out $2/gs4_nets.pt --device cuda --seeds 960-967 \
    --factors 1,0.94,0.88,0.82 --frames 40 --workdir /tmp/cal_$(basename $2) > $2/calibrate.log 2>&1
}
# The shipped file's parent: the shipped file without its own calibration (calibrate --undo).
python3 -m gs4_ros.cli train calibrate --undo --weights gs4_ros/weights/gs4_nets.pt --out /tmp/parent.pt \
  || cp gs4_ros/weights/gs4_nets.pt /tmp/parent.pt
cal /tmp/parent.pt $OUT/ship_cal &
cal $F $OUT/fresh_cal &
wait
tail -n 8 $OUT/ship_cal/calibrate.log $OUT/fresh_cal/calibrate.log
for n in ship fresh; do
  [ -f $OUT/${n}_cal/gs4_nets.pt ] || continue
  eval_bg $OUT/${n}_cal/gs4_nets.pt 900-919 +pruning $OUT/ev/gpu_${n}cal_900-919.json
  eval_bg $OUT/${n}_cal/gs4_nets.pt 900-919 +segmenter+head $OUT/ev/gpu_${n}cal_seg_900-919.json
done
wait
eval_failures $OUT/ev
for f in $OUT/ev/*.json; do gzip -k $f; done
