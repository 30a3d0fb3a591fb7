# The two files as calibrated on the CPU in the forty-first session, on the H100 over the
# held-out rooms 900-919: the shipped file (x0.94) and the fresh recipe file at its own
# factor (x0.82, `gs4 train calibrate --factor 0.82`), by the head (`+pruning`) and after
# the default end pass (`+segmenter+head`), beside the same command's H100 records of the
# uncalibrated files (fresh39/gpu_*_900-919.json.gz, gpu_*_seg.json.gz). The shorter
# form of t41b.sh (which calibrated on the GPU too; t42a.sh carries it since) for the
# device time left that session.
# Carry: .devcarry/whl7 .devcarry/gsplat_so
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
source benchmarks/device_calls/compare.sh
mkdir -p $OUT/ev
python3 -m gs4_ros.cli train calibrate --factor 0.82 --weights benchmarks/device_calls/fresh39/refiner/gs4_nets.pt \
  --out /tmp/fresh_cal/gs4_nets.pt || exit 1
eval_bg gs4_ros/weights/gs4_nets.pt 900-919 +pruning $OUT/ev/gpu_shipcal_900-919.json
eval_bg /tmp/fresh_cal/gs4_nets.pt 900-919 +pruning $OUT/ev/gpu_freshcal_900-919.json
eval_bg gs4_ros/weights/gs4_nets.pt 900-919 +segmenter+head $OUT/ev/gpu_shipcal_seg_900-919.json
eval_bg /tmp/fresh_cal/gs4_nets.pt 900-919 +segmenter+head $OUT/ev/gpu_freshcal_seg_900-919.json
wait
eval_failures $OUT/ev
for f in $OUT/ev/*.json; do gzip $f; done
ls -la $OUT/ev
