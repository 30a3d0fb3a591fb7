# Map mIoU on rooms 940-959 with config/map_quality.yaml, three variants run side by side on
# one GPU (timings not comparable, classes are): the shipped segmenter (baseline), the
# segmenter retrained by the card's command this session (.devcarry/seg2), and the shipped
# segmenter with 0.2 of the head's evidence mixed in.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
seeds=$(for s in $(seq 940 959); do echo --dataset synthetic:seed=$s,frames=40; done)
run() { timeout 420 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant $2 --out $OUT/$1 2>&1 | grep -v Warning > $OUT/$1.log; }
run ship mq-ship:config=config/map_quality.yaml,initializer=network &
run repro mq-repro:config=config/map_quality.yaml,initializer=network,network.segmenter_weights=.devcarry/seg2/gs4_segmenter.pt &
run mix mq-mix02:config=config/map_quality.yaml,initializer=network,network.final_semantics_head_weight=0.2 &
wait
for f in ship repro mix; do echo "== $f"; tail -4 $OUT/$f.log; done
