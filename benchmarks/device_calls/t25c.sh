# The defaults (no overlay) with the networks: the final pass by the segmenter over 920-959,
# then by the semantic head over 920-939 as the peer in the same call.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
seeds=$(for s in $(seq 920 959); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 270 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant net-seg:initializer=network --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -4 $OUT/sweep.log
seeds=$(for s in $(seq 920 939); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 150 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant net-head:initializer=network,network.final_semantics_model=head \
  --out $OUT/sw2 2>&1 | grep -v Warning > $OUT/sweep2.log; tail -4 $OUT/sweep2.log
