# The shipped two-head file's GPU cost and the CUDA-graph test with a second head.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
timeout 45 python3 benchmarks/nets_speed.py --device cuda --weights gs4_ros/weights/gs4_nets.pt 2>&1 | grep -v Warning | tail -8 | tee $OUT/speed.log
timeout 45 python3 benchmarks/nets_speed.py --device cuda --weights .devcarry/c12/gs4_nets.pt 2>&1 | grep -v Warning | tail -8 | tee -a $OUT/speed.log
timeout 70 python3 -m pytest -q -p no:cacheprovider test/test_nets.py -k "cuda or gpu" 2>&1 | tail -4 | tee $OUT/pytest.log
