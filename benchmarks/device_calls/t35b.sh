# Where the recipe's head falls short: the recipe's head stage (uncached, as recipe.yaml
# gives it) with a new head (--sem-fresh) on two frozen backbones, the shipped networks'
# and the recipe's blend stage's (.devcarry/recipe/blend, thirtieth session), MIN minutes
# each (default 5, rooms for MIN-1), then both beside the shipped file and the thirty-fifth
# session's G (the recipe's stage on the blend backbone, starting from the blend stage's
# head) and G5 (the same for 5 minutes: the peer of the blend row, whose head is new) by
# token mIoU on 92 unseen rooms. Same head stage, same time: if the shipped
# backbone's new head comes near the shipped heads (0.516 / 0.584) the recipe's gap is its
# backbone (the rendering stages); if it stays near the blend backbone's, the gap is the
# head stage (the shipped heads trained about 45 GPU minutes over several chunks and are
# three, averaged).
# Run under bg.sh (JOB=benchmarks/device_calls/t35b.sh), two calls (about 13 minutes).
# Carry: .devcarry/whl7 .devcarry/recipe .devcarry/t35/G .devcarry/t35/G5
WHL=.devcarry/whl7 GSPLAT_NOW=0 source benchmarks/device_calls/setup.sh
M=${MIN:-5}
# The recipe's head stage as `gs4 train recipe` fills it in, without its files, M minutes.
ARGS=$(M=$M python3 - <<'PY'
import os
from gs4_ros.train.recipe import load_recipe, stage_argv
a = stage_argv(next(s for s in load_recipe() if s.name == "head"), "/tmp", "cuda", "")[1:]
for k in ("--init-weights", "--ckpt", "--out"):
    i = a.index(k); del a[i:i + 2]
m = float(os.environ["M"])
a[a.index("--minutes") + 1], a[a.index("--data-minutes") + 1] = f"{m:g}", f"{m - 1:g}"
print(" ".join(a))
PY
)
echo "head stage: gs4 train $ARGS --sem-fresh"
for v in shipped:gs4_ros/weights/gs4_nets.pt blend:.devcarry/recipe/blend/gs4_nets.pt; do
  n=${v%%:*}; w=${v#*:}
  python3 -m gs4_ros.cli train $ARGS --init-weights $w --sem-fresh --ckpt /tmp/$n/ckpt.pt --out /tmp/$n/gs4_nets.pt \
    2>&1 | grep -v "train.data" | grep "validation\|keeps\|trained\|Error" | tee $OUT/log_$n.txt
  mkdir -p $OUT/$n && cp /tmp/$n/gs4_nets.pt /tmp/$n/gs4_nets.json $OUT/$n/
done
for s in 900-919 968-999,920-959; do
  python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --frames 4 --step 10 --seeds $s \
    --weights gs4_ros/weights/gs4_nets.pt .devcarry/t35/G/gs4_nets.pt .devcarry/t35/G5/gs4_nets.pt /tmp/shipped/gs4_nets.pt /tmp/blend/gs4_nets.pt \
    > /tmp/tokens_$s.txt 2>&1 &
done
wait
grep -hv "^INFO" /tmp/tokens_*.txt | tee $OUT/tokens.txt
