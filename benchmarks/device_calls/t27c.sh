# The online segmenter timed on a GPU: rooms 900-909 (40 frames, 640x480), the live map's
# classes from the heads versus from the segmenter at each keyframe, run one after the
# other (timings comparable; the first room of the first variant pays the warm-up).
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
seeds=$(for s in $(seq 900 909); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout ${LIMIT:-290} python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant live-head:initializer=network,network.final_semantics=false \
  --variant live-seg:initializer=network,network.final_semantics=false,network.online_segmenter=true \
  --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -12 $OUT/sweep.log
find $OUT/sw -name "*.ply" -delete; find $OUT/sw -name "*.png" -delete; du -sh $OUT/sw
