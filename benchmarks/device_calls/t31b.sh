# Three semantic-head stages on the thirtieth session's recipe backbone (its blend stage,
# carried as .devcarry/recipe/blend), then the three files on the card's synthetic rows, to find
# why the recipe's streamed head stage peaked at step 1600 (validation 0.491) and fell:
#   A: the recipe's head stage with its rooms made first, as the recipe's earlier form ran
#      it (no --stream-data; --minutes 7.5, --data-minutes 3.5), run through the recipe (a
#      copy of recipe.yaml changed in those three places) so the run folder records it;
#   B: the streamed head stage of recipe.yaml with a third of the learning rate (--lr 3e-4);
#   C: the streamed head stage of recipe.yaml with each cached frame kept 4 times
#      (--sem-cache-copies 4). Run once (VARIANTS=C, thirty-first session) before
#      --sem-cache-share existed, it spent its whole 5 minutes caching (2 head steps); the
#      default share now leaves half of the stage to the head;
#   D: the streamed head stage without the cache: every step runs the frozen backbone on
#      freshly drawn, mirrored and jittered frames, as the shipped head's chunks 2-11 did
#      (MODEL_CARD.md), so the head cannot fit a fixed set of cached frames;
#   E: D with 8 frames of each room, every 10th of its path (--frames 8 --step 10), the
#      shipped head's chunks 3-8: fewer rooms, more views of each (the shipped head saw
#      about ten times the recipe head's 3705 frames);
#   F: D with its rooms made for 4.5 of its 5 minutes (--data-minutes 4.5): new rooms reach
#      the head nearly to the end (the 600-room CPU trial gained where 60 rooms lost);
#   G: F given 12 minutes (G_MIN, 12 by default; rooms for 11; --seeds 6000 caps them near
#      45 GB of frames on the GPU): the shipped head trained about 45 GPU minutes over several chunks, the recipe's
#      5, so whether a longer head stage closes the gap. Its validation every 400 steps also
#      shows where a 5-minute stage would be.
#   H: the recipe's cached streamed head stage with the shipped keyframe segmenter as a
#      teacher (--sem-teacher: KL to its token probabilities beside the labels; the
#      segmenter runs once per cached frame). In the recipe the segmenter stage would run
#      before the head; the shipped segmenter is its command's output (thirty-third session:
#      on 60 cached CPU rooms the teacher kept validation 2-3 points above the labels alone);
#   J: the recipe's cached streamed head stage scoring and keeping an average of the head's
#      weights (--sem-ema 0.999): the thirtieth session's stage peaked at step 1600 of 11527.
# Run under bg.sh (JOB=benchmarks/device_calls/t31b.sh), three calls (about 23 minutes).
# VARIANTS="C D F" runs a subset (default A B C; each of B to F, H and J is about 5.5 minutes, G 12.5).
# Carry: .devcarry/whl7, .devcarry/recipe (state with whole-1..blend + blend/),
# [.devcarry/gsplat_so]. Back: each variant's weights and record, one evaluation file
# (the shipped weights first, as the peer) and (without a carried one) gsplat's compiled
# module, which compiles beside the training stages.
WHL=.devcarry/whl7 GSPLAT_NOW=0 source benchmarks/device_calls/setup.sh
mkdir -p /tmp/src /tmp/recipe && cp -r gs4_ros /tmp/src/ && cp -r .devcarry/recipe/. /tmp/recipe/
# The head stages render nothing; gsplat compiles beside them (niced) for the evaluation.
(cd /tmp && nice -n 10 python3 -c "from gsplat.cuda._backend import _C; print('gsplat ok')" > /tmp/gsplat.log 2>&1; cat /tmp/gsplat.log) &
export PYTHONPATH=/tmp/site:/tmp/src
want() { [[ " ${VARIANTS:-A B C} " == *" $1 "* ]]; }
if want A; then
  python3 - <<'PY' || exit 1
import yaml
d = yaml.safe_load(open("gs4_ros/train/recipe.yaml"))
a = next(s for s in d["stages"] if s["name"] == "head")["args"]
a.remove("--stream-data")
a[a.index("--minutes") + 1], a[a.index("--data-minutes") + 1] = "7.5", "3.5"
yaml.safe_dump(d, open("/tmp/recipe_head_nostream.yaml", "w"), sort_keys=False)
PY
  python3 -m gs4_ros.cli train recipe --dir /tmp/recipe --device cuda --recipe /tmp/recipe_head_nostream.yaml \
    --budget-minutes 8.5 || echo "variant A failed"
  mkdir -p $OUT/A && cp /tmp/recipe/head/gs4_nets.pt /tmp/recipe/head/gs4_nets.json /tmp/recipe/recipe_state.json $OUT/A/
fi
HEAD_ARGS="--init-weights /tmp/recipe/blend/gs4_nets.pt --device cuda --semantic-only --sem-context --sem-geometry
  --sem-attention --sem-cache --fill-holes --minutes 5.0 --data-minutes 2.5 --stream-data --workers 15 --seeds 6000
  --frames 3 --step 15 --sem-batch 32 --val-seeds 960-975 --val-every 400"
# One head stage: `variant V ARGS...` trains it into /tmp/V and keeps its record in $OUT/V.
variant() {
  local v=$1; shift
  python3 -m gs4_ros.cli train fit "$@" --ckpt /tmp/$v/ckpt.pt --out /tmp/$v/gs4_nets.pt || echo "variant $v failed"
  mkdir -p $OUT/$v && cp /tmp/$v/gs4_nets.json /tmp/$v/gs4_nets.pt $OUT/$v/
}
UNCACHED=${HEAD_ARGS/--sem-cache /}
want B && variant B $HEAD_ARGS --lr 3e-4
want C && variant C $HEAD_ARGS --sem-cache-copies 4
want D && variant D $UNCACHED
want E && variant E ${UNCACHED/--frames 3 --step 15/--frames 8 --step 10}
want F && variant F ${UNCACHED/--data-minutes 2.5/--data-minutes 4.5}
G_MIN=${G_MIN:-12}   # a shorter G where less device time is left (rooms made for all but its last minute)
want H && variant H $HEAD_ARGS --sem-teacher gs4_ros/weights/gs4_segmenter.pt
want J && variant J $HEAD_ARGS --sem-ema 0.999
want G && variant G ${UNCACHED/--minutes 5.0 --data-minutes 2.5/--minutes $G_MIN --data-minutes $((G_MIN - 1))}
wait    # the compile, for the evaluation; its module comes back once to be carried as .devcarry/gsplat_so
[ -f .devcarry/gsplat_so/stamp.txt ] || gsplat_export_build $OUT/gsplat_so
# S: the shipped weights, the peer on this same machine.
ALL="S A B C D E F G H J"
for v in $ALL; do
  w=/tmp/$v/gs4_nets.pt; [ $v = A ] && w=$OUT/A/gs4_nets.pt
  [ $v = S ] && w=gs4_ros/weights/gs4_nets.pt
  [ -f $w ] || continue
  python3 -m gs4_ros.cli train eval --device cuda --seeds 900,901,902 --frames 40 --variants +pruning,+segmenter+head \
    --weights $w > /tmp/eval_$v.txt 2>&1 &
done
# The heads alone (token mIoU, as the CPU trials were scored), beside the evaluation:
# held-out 900-919, then 72 more unseen rooms.
W=gs4_ros/weights/gs4_nets.pt; for v in $ALL; do [ $v != S ] && [ -f $OUT/$v/gs4_nets.pt ] && W="$W $OUT/$v/gs4_nets.pt"; done
for s in 900-919 968-999,920-959; do
  python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --frames 4 --step 10 --seeds $s --weights $W \
    > /tmp/tokens_$s.txt 2>&1 &
done
wait
for v in $ALL; do [ -f /tmp/eval_$v.txt ] && { echo "== $v"; grep -v "^INFO\|^measured" /tmp/eval_$v.txt; }; done > $OUT/eval.txt
cat /tmp/tokens_*.txt > $OUT/tokens.txt
cat $OUT/eval.txt $OUT/tokens.txt
