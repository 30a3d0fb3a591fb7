# A second set of rooms never evaluated (940-959): map_quality with the final semantic pass on / off.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
seeds=$(for s in $(seq 940 959); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 250 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant mq-fs:config=config/map_quality.yaml,initializer=network \
  --variant mq:config=config/map_quality.yaml,initializer=network,network.final_semantics=false \
  --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -8 $OUT/sweep.log
