# One short head stage for a session with little device time left: the recipe's cached
# streamed head stage (as t31b's HEAD_ARGS) with EXTRA options, cut to MIN minutes (default
# 3, rooms for all but the last 1.5), written to $OUT/V (default H). The default EXTRA is
# the shipped keyframe segmenter as the head's teacher (t31b's variant H). Its validation
# every 400 steps compares, step for step, with the thirtieth session's stage without
# either (.devcarry/recipe30/head/gs4_nets.json: 0.285, 0.381, 0.433, 0.471, 0.491 at
# steps 0-1600, then falling). No evaluation (t31b has it).
# Thirty-fourth session: `MIN=4 bash benchmarks/device_calls/t33a.sh` (the teacher) and
# `MIN=3.3 V=K EXTRA="--sem-dropout 0.5" bash benchmarks/device_calls/t33a.sh`.
# Carry: .devcarry/whl7, .devcarry/recipe (its blend/ stage). Back: the record and weights.
WHL=.devcarry/whl7 GSPLAT_NOW=0 source benchmarks/device_calls/setup.sh
M=${MIN:-3}
V=${V:-H}
EXTRA=${EXTRA:---sem-teacher gs4_ros/weights/gs4_segmenter.pt}
python3 -m gs4_ros.cli train fit --init-weights .devcarry/recipe/blend/gs4_nets.pt --device cuda --semantic-only \
  --sem-context --sem-geometry --sem-attention --sem-cache --fill-holes --minutes $M \
  --data-minutes $(python3 -c "print(max($M - 1.5, 0.5))") --stream-data --workers 15 --seeds 6000 --frames 3 --step 15 \
  --sem-batch 32 --val-seeds 960-975 --val-every 400 $EXTRA \
  --ckpt /tmp/$V/ckpt.pt --out $OUT/$V/gs4_nets.pt 2>&1 | grep -v "gs4_ros.train.data" | tail -40
