# The fresh run of the recipe finished and set beside the shipped networks (the check that
# the training command reproduces them). t38a.sh ran whole-1, whole-2 and blend from
# nothing in the thirty-eighth session; its run folder (state + the blend stage's files) is
# committed as benchmarks/device_calls/fresh39/ because ignored folders do not outlive a
# session's checkout. Here, in order:
#  1. blend-2, head and refiner on that folder through t31a.sh (BUDGET minutes, default 17:
#     the three stages with their margins take 16); each stage's files come back under
#     $OUT/<stage> as it ends, the refiner's first of all to be copied out;
#  2. if the device time lasts, the fresh file beside the shipped one on the same GPU: the
#     map by the head and after the default end-of-run pass over rooms 900-919 (gs4 train
#     eval, then benchmarks/eval_compare.py), token mIoU on 92 unseen rooms. Otherwise
#     the fresh file is scored on the CPU (`gs4 train eval --device cpu --seeds 900-919
#     --frames 40 --variants +pruning,+segmenter+head --weights FRESH --json F`, about 25
#     minutes on 2 cores) beside the shipped file's JSON of the same command,
#     fresh39/shipped_cpu_900-919.json.gz (thirty-eighth session; eval_compare.py reads it gzipped).
# Run under bg.sh (JOB=benchmarks/device_calls/t39a.sh), two or three calls.
# As run (thirty-ninth session, one H100, three bg.sh calls): the three stages as planned
# (blend-2 451 s, head 300 s, refiner 120 s); the token figures came back, but of the
# four evaluations only the shipped file's by the head wrote its JSON; the other three
# were run again in one direct call on the warm machine (312 s) and all wrote theirs.
# eval_failures (compare.sh, added after) now prints why an evaluation left no JSON.
# Carry: .devcarry/whl7 .devcarry/7s250 [.devcarry/gsplat_so]
FROM=benchmarks/device_calls/fresh39 DIR=/tmp/fresh BUDGET=${BUDGET:-17} bash benchmarks/device_calls/t31a.sh
export PYTHONPATH=/tmp/site:$PWD
R=/tmp/fresh/refiner/gs4_nets.pt
[ -f $R ] || { echo "no refiner stage output"; exit 1; }
E=/tmp/ev   # the evaluations' JSON files
mkdir -p $E
source benchmarks/device_calls/compare.sh
for v in shipped:gs4_ros/weights/gs4_nets.pt fresh:$R; do
  eval_bg ${v#*:} 900-919 +pruning $E/${v%%:*}_900-919.json
  eval_bg ${v#*:} 900-919 +segmenter+head $E/${v%%:*}_seg.json
done
tokens_bg gs4_ros/weights/gs4_nets.pt $R
wait
{ grep -hv "^INFO" /tmp/tokens_*.txt
  eval_failures $E
  python3 benchmarks/eval_compare.py shipped=$E/shipped_900-919.json fresh=$E/fresh_900-919.json
  python3 benchmarks/eval_compare.py shipped=$E/shipped_seg.json fresh=$E/fresh_seg.json; } > /tmp/figures.txt 2>&1
tar czf $OUT/ev.tgz -C /tmp ev && cp /tmp/figures.txt $OUT/ && cat $OUT/figures.txt
