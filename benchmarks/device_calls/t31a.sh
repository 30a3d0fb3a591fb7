# The recipe (gs4_ros/train/recipe.yaml, or RECIPE=FILE) as a job for bg.sh, which keeps it
# running across calls on the warm machine as t30a.sh did: `JOB=benchmarks/device_calls/
# t31a.sh bash benchmarks/device_calls/bg.sh`, the same command again within 30 s of each
# return. Beyond t30a: gsplat's CUDA module comes prebuilt where .devcarry/gsplat_so holds
# one for this torch/gsplat/GPU (gsplat_prebuilt.sh), else it is compiled before the
# stages' clocks start (t30a's whole-1 waited 115 s of its 7.3 minutes for it) and comes
# back under $OUT/gsplat_so to be carried; a run folder carried as .devcarry/recipe (or FROM=DIR;
# DIR= the folder on the machine, /tmp/recipe by default)
# (recipe_state.json + the newest stage's files) is continued. The stages run while they
# fit in BUDGET minutes (default 26: most of one session; the run folder carries the rest). Each finished stage's weights
# and record are put under $OUT as the run goes, for bg.sh to return.
# Carry: .devcarry/whl7 .devcarry/7s250 [.devcarry/gsplat_so] [.devcarry/recipe or FROM's folder]
t=$(date +%s); export MAX_JOBS=16    # gsplat's compile, if it runs, at full CPU
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
echo "gsplat ready in $(( $(date +%s) - t )) s"
python3 benchmarks/pack_frames.py unpack .devcarry/7s250 /tmp/7s > /dev/null || exit 1
[ -f .devcarry/gsplat_so/stamp.txt ] || gsplat_export_build $OUT/gsplat_so
D=${DIR:-/tmp/recipe}   # the run folder on the machine
mkdir -p /tmp/src $D && cp -r gs4_ros /tmp/src/
F=${FROM:-.devcarry/recipe}
[ -d $F ] && cp -r $F/. $D/ && echo "continuing $F: $(ls $F | tr '\n' ' ')"
finished_stages_to_out() {   # a stage's record is written after its weights
  cp $D/recipe_state.json $OUT/ 2> /dev/null
  for rec in $D/*/gs4_*.json; do
    [ -f "$rec" ] || continue
    n=$(basename $(dirname $rec)); w=${rec%.json}.pt
    [ -f $OUT/$n/$(basename $rec) ] || { mkdir -p $OUT/$n && cp $w $rec $OUT/$n/; }
  done
}
(while sleep 20; do finished_stages_to_out; done) &
PYTHONPATH=/tmp/site:/tmp/src python3 -m gs4_ros.cli train recipe --dir $D --device cuda --real /tmp/7s \
  --budget-minutes ${BUDGET:-26} ${RECIPE:+--recipe $RECIPE} 2>&1 | grep --line-buffered -v "gs4_ros.train.data"
kill $! 2> /dev/null; finished_stages_to_out
