# The ensemble's GPU cost and the CUDA-graph test with an ensemble head.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
for w in gs4_ros/weights/gs4_nets.pt .devcarry/ens/gs4_nets.pt; do
  timeout 35 python3 benchmarks/nets_speed.py --device cuda --weights $w 2>&1 | grep -v Warning | tail -8 | tee -a $OUT/speed.log
done
timeout 45 python3 -m pytest -q -p no:cacheprovider test/test_nets.py -k "cuda or gpu" 2>&1 | tail -4 | tee $OUT/pytest.log
