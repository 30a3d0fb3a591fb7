# Is the fresh recipe file's higher rendered-depth error the refiner stage's run-to-run
# noise? Over the 60 held-out rooms 900-959 the fresh file (fresh39/refiner) has depth L1
# 0.36-0.39 cm above the shipped file's in every room (2.8 -> 3.2 cm on 900-919, H100),
# while held-out PSNR is equal; in the model card's ablation rows (3 rooms) the gap is
# +0.10 cm at `prediction` and +0.42 at `+refinement`. Here, on one warm machine:
#  1. the recipe's refiner stage again, its own arguments (gs4_ros/train/recipe.yaml), from
#     the fresh run's head-stage file (fresh39/head, the input the fresh refiner stage
#     had), written to $OUT/r2;
#  2. the map by the head (`+pruning`) over rooms 900-919 with that file and with the head
#     file itself (its refiner is the one blend-2 trained), beside the shipped and fresh
#     files' JSONs of the same command on an H100 (fresh39/gpu_*_900-919.json.gz).
#   EVAL=0 bash benchmarks/device_calls/t40c.sh   (the stage only, ~4 min with its setup)
# On the CPU since (fortieth session, benchmarks/refiner_swap.py): over rooms 900-909 the
# fresh predictor alone (`prediction`, no refiner) is already +0.29 cm above the shipped
# file, the head-stage file +0.26 and the fresh file +0.36 (`+pruning`), so the refiner
# stage adds about 0.1 cm; this call says whether that share, and the stage's colour /
# depth balance, move from one run of the stage to the next.
# Not run yet: the fortieth session got no machine (fourteen refused starts).
# Carry: .devcarry/whl7 .devcarry/7s250 .devcarry/gsplat_so
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
python3 benchmarks/pack_frames.py unpack .devcarry/7s250 /tmp/7s > /dev/null || exit 1
H=benchmarks/device_calls/fresh39/head/gs4_nets.pt
[ -f $H ] || { echo "no head-stage file at $H"; exit 1; }
# The stage's own arguments from recipe.yaml (stage_args.py, as t36a.sh), not a copy here.
A=$(python3 benchmarks/device_calls/stage_args.py refiner 2.0 0.8 /tmp/7s) || exit 1
timeout 260 python3 -m gs4_ros.cli train $A --init-weights $H --ckpt /tmp/r2/ckpt.pt --out /tmp/r2/gs4_nets.pt \
  2>&1 | grep -v Warning | grep -E "refiner clip|wrote|Error|error" | tail -8
[ -f /tmp/r2/gs4_nets.pt ] || { echo "no refiner output"; exit 1; }
mkdir -p $OUT/r2 $OUT/ev && cp /tmp/r2/gs4_nets.pt /tmp/r2/gs4_nets.json $OUT/r2/
[ "${EVAL:-1}" = 0 ] && exit 0   # EVAL=0: the training only (the evaluations on the CPU here)
source benchmarks/device_calls/compare.sh
eval_bg /tmp/r2/gs4_nets.pt 900-919 +pruning $OUT/ev/gpu_r2_900-919.json
eval_bg $H 900-919 +pruning $OUT/ev/gpu_head_900-919.json
wait
eval_failures $OUT/ev
for f in $OUT/ev/*.json; do gzip -k $f; done
