# The fresh recipe file (benchmarks/device_calls/fresh39/refiner/gs4_nets.pt, the
# thirty-ninth session's reproduction) on the H100 figures the README quotes for the
# shipped file, each with the shipped file in the same call, so that it can be shipped on
# evidence: (1) cost per mapped frame (nets_speed.py; same architecture, so it should
# match 6.98 ms), (2) `config/map_quality.yaml` with the default end-of-run pass over the
# 60 held-out rooms 900-959 (shipped: 82.6% map mIoU, 30.26 dB held out, thirty-eighth
# session; ~5.5 s a room and variant on an H100, the two files as two variants of one
# sweep, so 30 rooms a call). Run on the machine t40a.sh warmed (wheels and gsplat in
# /tmp/site), in two calls (no carry needed beyond the tree):
#   FIRST=900 LAST=929 bash benchmarks/device_calls/t40b.sh   (with the speed check)
#   FIRST=930 LAST=959 bash benchmarks/device_calls/t40b.sh
export PYTHONPATH=/tmp/site:$PWD TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
FRESH=benchmarks/device_calls/fresh39/refiner/gs4_nets.pt
[ "${FIRST:-900}" = 900 ] && for w in gs4_ros/weights/gs4_nets.pt $FRESH; do
  echo "== $w"; python3 benchmarks/nets_speed.py --device cuda --weights $w 2>&1 | grep -v "^INFO"
done | tee $OUT/nets_speed.txt
MQ=config=config/map_quality.yaml,initializer=network
timeout 480 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
  $(for s in $(seq ${FIRST:-900} ${LAST:-929}); do echo --dataset synthetic:seed=$s,frames=40; done) \
  --variant shipped-mq:$MQ --variant fresh-mq:$MQ,network.weights=$FRESH 2>&1 | grep -v Warning \
  | tee $OUT/sweep_mq_${FIRST:-900}.txt
