# The final semantic pass with config/map_quality.yaml (pass off / on), and on the defaults
# with the validation-chosen scales, 20 held-out rooms on an H100.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
seeds=$(for s in $(seq 900 919); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 560 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant mq:config=config/map_quality.yaml,initializer=network,network.final_semantics=false \
  --variant mq-fs:config=config/map_quality.yaml,initializer=network \
  --variant net-fs3:initializer=network,network.final_semantics_scales=[0.6,0.75,1.25] \
  --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -12 $OUT/sweep.log
