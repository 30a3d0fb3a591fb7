# The recipe's whole-1 stage with --stream-data (training starts once 14 rooms are made,
# the rest join until --data-minutes) and 2.0 minutes less than its 8.2 (the data phase
# it no longer waits for), to compare with the recorded whole-1 (493 s, 1916 predictor
# steps, 668 refiner clips, final loss 2.005 / 0.052; docs/results.md); then the weights
# against the shipped ones on rooms 940-943 with config/map_quality.yaml in the time left.
# Carry: .devcarry/whl7 .devcarry/7s250
R=$PWD; T0=$(date +%s)
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh > $OUT/setup.log 2>&1 &
python3 benchmarks/pack_frames.py unpack .devcarry/7s250 /tmp/7s > /dev/null || exit 1
wait; cat $OUT/setup.log; export PYTHONPATH=/tmp/site:$PWD TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
mkdir -p $OUT/w1s
timeout ${LIMIT:-420} python3 -m gs4_ros.cli train fit --device cuda --minutes ${MIN:-6.2} --data-minutes 2.4 --stream-data \
  --workers 14 --seeds 600 --frames 16 --step 5 --batch 4 --sem-batch 8 --token-weight 1.0 --fill-holes \
  --real /tmp/7s --real-frames 0:250:2 --ckpt /tmp/w1s/ckpt.pt --out /tmp/w1s/gs4_nets.pt 2>&1 \
  | grep -v "gs4_ros.train.data: synthetic seed" | tee $OUT/w1s/log.txt | grep -v "step\|clip" | tail -8
grep "predictor step\|refiner clip" $OUT/w1s/log.txt | tail -3
cp /tmp/w1s/gs4_nets.pt /tmp/w1s/gs4_nets.json $OUT/w1s/
left=$(( ${END:-585} - $(date +%s) + T0 )); echo "sweep gets ${left} s"; [ $left -gt 150 ] || exit 0
seeds=$(for s in 940 941 942 943; do echo --dataset synthetic:seed=$s,frames=40; done)
timeout $left python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant shipped:config=config/map_quality.yaml,initializer=network \
  --variant w1s:config=config/map_quality.yaml,initializer=network,network.weights=/tmp/w1s/gs4_nets.pt \
  --out $OUT/sw 2>&1 | grep -v Warning > $OUT/sweep.log; tail -14 $OUT/sweep.log
find $OUT/sw -name "*.ply" -delete; find $OUT/sw -name "*.png" -delete
