# The recipe's stages from the head stage on (head, now uncached for 8 minutes, then the
# refiner), continuing the thirtieth session's run folder (.devcarry/recipe: whole-1 ..
# blend done), then the recipe's networks beside the shipped ones and beside the thirty-
# fifth session's head stage G (t34a.sh: the same command on the same backbone, so the
# two heads say how far one run of the stage reproduces another): map mIoU on the card's
# rooms 900-902 and token mIoU on 92 unseen rooms.
# First, head_step_speed.py's split of the uncached step as the recipe's stage runs it (G's
# weights: one head; the shipped file's three heads cost three times the head's share):
# how much of it is the frozen backbone, how much the head (2-core CPU, 4 frames: 153 and
# 189 ms of a 469 ms step).
# Run under bg.sh (JOB=benchmarks/device_calls/t35a.sh), two calls (about 16 minutes).
# Carry: .devcarry/whl7 .devcarry/7s250 .devcarry/gsplat_so .devcarry/recipe .devcarry/t35/G
WHL=.devcarry/whl7 GSPLAT_NOW=0 source benchmarks/device_calls/setup.sh
timeout 240 python3 benchmarks/head_step_speed.py --device cuda --batch 32 --weights .devcarry/t35/G/gs4_nets.pt 2>&1 | grep "^|\|^head\|agree" > $OUT/head_step.txt
cat $OUT/head_step.txt
BUDGET=12 bash benchmarks/device_calls/t31a.sh
export PYTHONPATH=/tmp/site:/tmp/src
R=/tmp/recipe/refiner/gs4_nets.pt
[ -f $R ] || { echo "no refiner stage output"; exit 1; }
for w in gs4_ros/weights/gs4_nets.pt $R; do
  python3 -m gs4_ros.cli train eval --device cuda --seeds 900,901,902 --frames 40 --variants +pruning,+segmenter+head \
    --weights $w 2>&1 | grep -v "^INFO\|^measured" > /tmp/eval_$(basename $(dirname $w)).txt &
done
for s in 900-919 968-999,920-959; do
  python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --frames 4 --step 10 --seeds $s \
    --weights gs4_ros/weights/gs4_nets.pt .devcarry/t35/G/gs4_nets.pt $R > /tmp/tokens_$s.txt 2>&1 &
done
wait
for f in /tmp/eval_*.txt; do echo "== $f"; cat $f; done > $OUT/eval.txt
grep -hv "^INFO" /tmp/tokens_*.txt > $OUT/tokens.txt
cat $OUT/eval.txt $OUT/tokens.txt
