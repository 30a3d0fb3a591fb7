source benchmarks/device_calls/setup.sh
rooms=""; for s in $(seq ${FIRST:-900} ${LAST:-919}); do rooms="$rooms --dataset synthetic:seed=$s,frames=40"; done
timeout ${BUDGET:-520} python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
  --config config/map_quality.yaml $rooms \
  --variant net-mq:initializer=network,backend.final_refine_rounds=0 \
  --variant net-mq-refine:initializer=network 2>&1 | grep -v Warning | tee $OUT/sweep_${FIRST:-900}.log
