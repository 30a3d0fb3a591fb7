# Rooms 920-939, map_quality: the shipped segmenter against 0.2 and 0.3 of the head mixed in, side by side.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
seeds=$(for s in $(seq 920 939); do echo --dataset synthetic:seed=$s,frames=40; done)
run() { timeout 400 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant $2 --out $OUT/$1 2>&1 | grep -v Warning > $OUT/$1.log; }
run ship mq-ship:config=config/map_quality.yaml,initializer=network &
run mix03 mq-mix03:config=config/map_quality.yaml,initializer=network,network.final_semantics_head_weight=0.3 &
run mix mq-mix02:config=config/map_quality.yaml,initializer=network,network.final_semantics_head_weight=0.2 &
wait
for f in ship mix mix03; do echo "== $f"; tail -4 $OUT/$f.log; done
