# GPU cost of the shipped two-head file, the unshipped three-head file and chunk 12 (one head);
# the CUDA tests of the networks.
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
for w in gs4_ros/weights/gs4_nets.pt .devcarry/ens3/gs4_nets.pt .devcarry/c12/gs4_nets.pt gs4_ros/weights/gs4_nets.pt; do
  echo "== $w"; timeout 60 python3 benchmarks/nets_speed.py --device cuda --weights $w 2>&1 | grep -v Warning | tail -8
done | tee $OUT/speed.log
timeout 90 python3 -m pytest -q -p no:cacheprovider test/test_nets.py -k "cuda or gpu" 2>&1 | tail -4 | tee $OUT/pytest.log
