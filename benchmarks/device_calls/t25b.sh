# The keyframe segmenter (chunk 1, shipped as gs4_ros/weights/gs4_segmenter.pt) on the map:
# CUDA tests, then map_quality + networks over rooms 920-959 (the final pass now runs the
# segmenter), then the semantic head's pass on 920-939 as the peer in the same call.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
timeout 120 python3 -m pytest -q -p no:cacheprovider test/test_segmenter.py test/test_semantic_tta.py -k "cuda" 2>&1 | tail -3 | tee $OUT/pytest.log
seeds=$(for s in $(seq 920 959); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 330 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant mq-seg:config=config/map_quality.yaml,initializer=network \
  --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -50 $OUT/sweep.log
seeds=$(for s in $(seq 920 939); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 170 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant mq-head:config=config/map_quality.yaml,initializer=network,network.final_semantics_model=head \
  --out $OUT/sw2 2>&1 | grep -v Warning > $OUT/sweep2.log; tail -30 $OUT/sweep2.log
