# The recipe's networks as one file, then a fresh run of its chain begun. In order:
#  1. the refiner stage, the one stage .devcarry/recipe36 still lacks (that folder: the
#     thirtieth session's whole-1 .. blend, the thirty-sixth session's blend-2 and head from
#     t36a.sh, the segmenter stage's output = the shipped segmenter, each named in its
#     recipe_state.json), through t31a.sh; then its file beside the shipped one: the card's
#     rows (gs4 train eval, rooms 900-902, by the head and after the segmenter's pass),
#     the map by the head over rooms 900-919 (eval_compare.py) and token mIoU on 92 unseen
#     rooms;
#  2. a fresh run folder from whole-1 on, BUDGET2 minutes (default 17: whole-1, whole-2 and
#     blend), its files under $OUT/fresh to be carried into the next session (FROM=).
# Run under bg.sh (JOB=benchmarks/device_calls/t37a.sh), three calls (about 25 minutes).
# Carry: .devcarry/whl7 .devcarry/7s250 .devcarry/gsplat_so .devcarry/recipe37 (recipe36 without its
# segmenter/ folder, 12 MiB over the 64 MiB carry limit; its state still names the stage done)
FROM=.devcarry/recipe37 DIR=/tmp/recipe36 BUDGET=3 bash benchmarks/device_calls/t31a.sh
export PYTHONPATH=/tmp/site:$PWD
R=/tmp/recipe36/refiner/gs4_nets.pt
if [ -f $R ]; then
  python3 -m gs4_ros.cli train eval --device cuda --seeds 900,901,902 --frames 40 --variants +pruning,+segmenter+head \
    --weights $R 2>&1 | grep -v "^INFO\|^measured" > /tmp/eval_card.txt &
  source benchmarks/device_calls/compare.sh
  for v in shipped:gs4_ros/weights/gs4_nets.pt recipe:$R; do   # 20 rooms, for benchmarks/eval_compare.py
    eval_bg ${v#*:} 900-919 +pruning /tmp/ev20_${v%%:*}.json
  done
  tokens_bg gs4_ros/weights/gs4_nets.pt $R
  wait
  python3 benchmarks/eval_compare.py shipped=/tmp/ev20_shipped.json recipe=/tmp/ev20_recipe.json > /tmp/compare.txt
  # The newest files are what bg.sh returns (7): the recipe's file and the figures.
  mkdir -p $OUT/recipe && cp $R ${R%.pt}.json $OUT/recipe/ && cp /tmp/ev20_*.json $OUT/
  { cat /tmp/eval_card.txt; grep -hv "^INFO" /tmp/tokens_*.txt; cat /tmp/compare.txt; } | tee $OUT/figures.txt
else
  echo "no refiner stage output"
fi
mkdir -p $OUT/fresh
OUT=$OUT/fresh FROM=/nonexistent DIR=/tmp/fresh BUDGET=${BUDGET2:-17} bash benchmarks/device_calls/t31a.sh
