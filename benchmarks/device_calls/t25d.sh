# The shipped default (the segmenter's pass mirrored only) with map_quality on rooms 940-959.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
seeds=$(for s in $(seq 940 959); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 185 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant mq-seg-m:config=config/map_quality.yaml,initializer=network \
  --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -4 $OUT/sweep.log; grep -c mIoU $OUT/sweep.log
