# Sourced by the device scripts that set a networks file beside the shipped one; each
# function starts its work in the background, so the caller runs several at once on the
# GPU and then `wait`s.
#   eval_bg WEIGHTS SEEDS VARIANTS JSON: `gs4 train eval` on held-out rooms (for
#     benchmarks/eval_compare.py); its log beside JSON (JSON%.json.log), since in
#     t39a three of four such evaluations started together with tokens_bg died unseen
#     (their output went to /dev/null; the same three, started together without the
#     fourth and the token script on the warm machine, ran)
#   eval_failures DIR: the tail of each log in DIR whose JSON is missing
#   tokens_bg WEIGHTS...: token mIoU of each file on the 92 unseen rooms, written to
#     /tmp/tokens_900-919.txt and /tmp/tokens_968-999,920-959.txt
eval_bg() {
  python3 -m gs4_ros.cli train eval --device cuda --seeds $2 --frames 40 --variants $3 --weights $1 \
    --json $4 > ${4%.json}.log 2>&1 &
}
eval_failures() {
  local log
  for log in $1/*.log; do
    [ -f "$log" ] || continue   # no logs at all: the glob stays literal
    [ -f "${log%.log}.json" ] || { echo "== $log (no JSON)"; tail -n 15 "$log"; }
  done
}
tokens_bg() {
  local s
  for s in 900-919 968-999,920-959; do
    python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --frames 4 --step 10 --seeds $s \
      --weights "$@" > /tmp/tokens_$s.txt 2>&1 &
  done
}
