WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
rooms=""; for s in $(seq 900 919); do rooms="$rooms --dataset synthetic:seed=$s,frames=40"; done
timeout ${BUDGET:-480} python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
  --config config/map_quality.yaml $rooms \
  --variant net-mq-refine:initializer=network \
  --variant net-mq-refine-c16:initializer=network,backend.final_compact_pixels=16 2>&1 | grep -v Warning | tee $OUT/sweep_c16.log
