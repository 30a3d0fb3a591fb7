# The fresh run of the recipe finished and set beside the shipped networks (the check that
# the training command reproduces them). The thirty-seventh session ran whole-1, whole-2
# and blend from nothing (t37a.sh); here, in order:
#  1. blend-2, head and refiner on that run folder through t31a.sh (BUDGET minutes,
#     default 17: the three stages with their margins take 16);
#  2. the fresh file beside the shipped one in the same call: the map by the head over
#     rooms 900-939 and after the default end-of-run pass over 900-919 (gs4 train eval,
#     then benchmarks/eval_compare.py), token mIoU on 92 unseen rooms.
# The segmenter stage is left: its command ran three times before (the shipped segmenter
# is the third run). Run under bg.sh (JOB=benchmarks/device_calls/t38a.sh), three calls
# (about 26 minutes).
# Carry: .devcarry/whl7 .devcarry/7s250 .devcarry/gsplat_so .devcarry/fresh38 (the
# thirty-seventh session's run folder: its state and the blend stage's files)
FROM=.devcarry/fresh38 DIR=/tmp/fresh BUDGET=${BUDGET:-17} bash benchmarks/device_calls/t31a.sh
export PYTHONPATH=/tmp/site:$PWD
R=/tmp/fresh/refiner/gs4_nets.pt
[ -f $R ] || { echo "no refiner stage output"; exit 1; }
E=/tmp/ev   # the evaluations' JSON files
mkdir -p $E
source benchmarks/device_calls/compare.sh
for v in shipped:gs4_ros/weights/gs4_nets.pt fresh:$R; do
  eval_bg ${v#*:} 900-919 +pruning $E/${v%%:*}_900-919.json
  eval_bg ${v#*:} 920-939 +pruning $E/${v%%:*}_920-939.json
  eval_bg ${v#*:} 900-919 +segmenter+head $E/${v%%:*}_seg.json
done
tokens_bg gs4_ros/weights/gs4_nets.pt $R
wait
{ grep -hv "^INFO" /tmp/tokens_*.txt
  python3 benchmarks/eval_compare.py shipped=$E/shipped_900-919.json,$E/shipped_920-939.json \
    fresh=$E/fresh_900-919.json,$E/fresh_920-939.json
  python3 benchmarks/eval_compare.py shipped=$E/shipped_seg.json fresh=$E/fresh_seg.json; } > /tmp/figures.txt 2>&1
# bg.sh returns the newest 7 files: the evaluations as one archive, the fresh file, the figures.
tar czf $OUT/ev.tgz -C /tmp ev && mkdir -p $OUT/fresh_final && cp $R ${R%.pt}.json $OUT/fresh_final/
cp /tmp/figures.txt $OUT/ && cat $OUT/figures.txt
