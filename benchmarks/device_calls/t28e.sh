# Evaluate the recipe's networks against the shipped ones on one GPU (after all its
# stages; NETS names the networks file, by default the refiner stage's): map mIoU /
# held-out PSNR on rooms 940-959 with config/map_quality.yaml (three variants side by
# side: shipped, recipe networks + shipped segmenter, recipe networks + recipe
# segmenter), then the networks' cost per mapped frame (shipped and recipe, one after
# the other, alone on the GPU). Carry: .devcarry/whl7 .devcarry/recipe (which must hold
# the networks file AND segmenter/gs4_segmenter.pt: keep the earlier stage folders when
# the segmenter stage comes back).
WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
R=.devcarry/recipe
NETS=${NETS:-$R/refiner/gs4_nets.pt}
seeds=$(for s in $(seq 940 959); do echo --dataset synthetic:seed=$s,frames=40; done)
run() { timeout ${LIMIT:-380} python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 $seeds \
  --variant $2 --out $OUT/$1 2>&1 | grep -v Warning > $OUT/$1.log; }
run ship mq-ship:config=config/map_quality.yaml,initializer=network &
run nets mq-recipe-nets:config=config/map_quality.yaml,initializer=network,network.weights=$NETS &
run all mq-recipe:config=config/map_quality.yaml,initializer=network,network.weights=$NETS,network.segmenter_weights=$R/segmenter/gs4_segmenter.pt &
wait
for f in ship nets all; do echo "== $f"; tail -4 $OUT/$f.log; done
for w in gs4_ros/weights/gs4_nets.pt $NETS; do echo "== nets_speed $w"; timeout 60 python3 benchmarks/nets_speed.py --device cuda --weights $w 2>&1 | tail -4; done
