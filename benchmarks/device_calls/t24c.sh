# Confirmation on 20 rooms never evaluated before (920-939, below the training seeds and
# apart from the validation rooms 960-999): map_quality with the final semantic pass off /
# on, and the defaults with it on.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
seeds=$(for s in $(seq 920 939); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 500 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant mq:config=config/map_quality.yaml,initializer=network,network.final_semantics=false \
  --variant mq-fs:config=config/map_quality.yaml,initializer=network \
  --variant net-fs:initializer=network \
  --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -12 $OUT/sweep.log
