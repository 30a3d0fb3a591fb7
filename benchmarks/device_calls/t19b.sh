WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
python3 benchmarks/pack_frames.py unpack .devcarry/7s /tmp/7scenes > /dev/null || exit 1
S="python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 --dataset 7scenes:/tmp/7scenes"
N=initializer=network
run() { tag=$1; shift; timeout ${BUDGET:-560} "$@" 2>&1 | grep -v Warning | tee $OUT/$tag.log; }
for R in ${RANGES:-250:350 0:500}; do
  t=${R/:/-}
  run v0_$t $S --frames $R --variant geo: --variant net:$N
  run mq_$t $S --frames $R --config config/map_quality.yaml --variant net-mq-refine:$N \
     --variant net-mq-refine-c16:$N,backend.final_compact_pixels=16 --variant geo-mq-refine-c16:backend.final_compact_pixels=16
done
