# Sourced by the device scripts that set a networks file beside the shipped one; each
# function starts its work in the background, so the caller runs several at once on the
# GPU and then `wait`s.
#   eval_bg WEIGHTS SEEDS VARIANTS JSON: `gs4 train eval` on held-out rooms (for
#     benchmarks/eval_compare.py)
#   tokens_bg WEIGHTS...: token mIoU of each file on the 92 unseen rooms, written to
#     /tmp/tokens_900-919.txt and /tmp/tokens_968-999,920-959.txt
eval_bg() {
  python3 -m gs4_ros.cli train eval --device cuda --seeds $2 --frames 40 --variants $3 --weights $1 \
    --json $4 > /dev/null 2>&1 &
}
tokens_bg() {
  local s
  for s in 900-919 968-999,920-959; do
    python3 benchmarks/semantic_tokens.py --device cuda --fill-holes --frames 4 --step 10 --seeds $s \
      --weights "$@" > /tmp/tokens_$s.txt 2>&1 &
  done
}
