# Final semantic pass (test-time augmentation) on an H100: CUDA tests, then the 20 held-out
# rooms with the shipped networks, the pass off and on, in one sweep.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
timeout 150 python3 -m pytest -q -p no:cacheprovider test/test_semantic_tta.py test/test_nets.py -k "cuda or gpu" 2>&1 | tail -4 | tee $OUT/pytest.log
seeds=$(for s in $(seq 900 919); do echo --dataset synthetic:seed=$s,frames=40; done)
timeout 400 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant net:initializer=network,network.final_semantics=false --variant net-fs:initializer=network \
  --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -40 $OUT/sweep.log
