# Is the recipe's head short because its backbone trained too little? The thirtieth
# session's recipe backbone (.devcarry/recipe/blend) had 2395 predictor steps, the shipped
# one 3849, and on a CPU a new head learnt 7-10 points of token mIoU more on the shipped
# backbone than on the recipe's. Here, on one GPU, in order:
#  1. blendplus: the recipe's blend stage again from the blend stage's output, BP_MIN
#     minutes (default 7.5, rooms for 2.5; fresh seeds): about 1300 more steps, near the
#     shipped count;
#  2. headBP: the recipe's head stage on blendplus, HEAD_MIN minutes (default 5, rooms for
#     all but the last): the peer of the thirty-fifth session's G5 (the same stage on the
#     blend backbone: 4206 steps, validation 0.285 at the start, best 0.476; tokens 0.425 /
#     0.422 on rooms 900-919 / 968-999,920-959);
#  3. token mIoU of shipped, G5, blendplus and headBP on those 92 unseen rooms;
#  4. shipfresh: the same head stage with a new head (--sem-fresh) on the shipped backbone,
#     then its tokens: how far a head from this stage goes on a backbone known to be good.
# The head stage's validation at its start scores each backbone's own head before the
# stage. Stage arguments come from recipe.yaml through stage_args.py.
# Run under bg.sh (JOB=benchmarks/device_calls/t36a.sh), three calls (about 24 minutes).
# Carry: .devcarry/whl7 .devcarry/7s250 .devcarry/gsplat_so .devcarry/recipe/blend .devcarry/t35/G5
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
python3 benchmarks/pack_frames.py unpack .devcarry/7s250 /tmp/7s > /dev/null || exit 1
export PYTHONPATH=/tmp/site:$PWD
BP=${BP_MIN:-7.5}; HM=${HEAD_MIN:-5}
stage() { python3 benchmarks/device_calls/stage_args.py "$@"; }
fit() {   # fit NAME INIT_WEIGHTS ARGS...: weights and record to $OUT/NAME, the log's gist to $OUT/log.txt
  local n=$1 w=$2; shift 2
  echo "== $n: gs4 train $* --init-weights $w" | tee -a $OUT/log.txt
  python3 -m gs4_ros.cli train "$@" --init-weights $w --ckpt /tmp/$n/ckpt.pt --out /tmp/$n/gs4_nets.pt 2>&1 \
    | grep --line-buffered -v "train.data" | grep --line-buffered "validation\|keeps\|trained\|resumed\|ready\|Error" \
    | tee -a $OUT/log.txt
  mkdir -p $OUT/$n && cp /tmp/$n/gs4_nets.pt /tmp/$n/gs4_nets.json $OUT/$n/
}
tokens() {   # tokens FILE WEIGHTS...: both unseen sets at once
  local f=$1; shift
  for s in 900-919 968-999,920-959; do
    python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --frames 4 --step 10 --seeds $s --weights "$@" \
      > /tmp/tokens_$s.txt 2>&1 &
  done
  wait
  grep -hv "^INFO" /tmp/tokens_*.txt | tee $OUT/$f
}
fit blendplus .devcarry/recipe/blend/gs4_nets.pt $(stage blend $BP 2.5 /tmp/7s)
fit headBP /tmp/blendplus/gs4_nets.pt $(stage head $HM $(python3 -c "print($HM - 1)"))
tokens tokens_bp.txt gs4_ros/weights/gs4_nets.pt .devcarry/t35/G5/gs4_nets.pt /tmp/blendplus/gs4_nets.pt /tmp/headBP/gs4_nets.pt
fit shipfresh gs4_ros/weights/gs4_nets.pt $(stage head $HM $(python3 -c "print($HM - 1)")) --sem-fresh
tokens tokens_ship.txt /tmp/shipfresh/gs4_nets.pt
