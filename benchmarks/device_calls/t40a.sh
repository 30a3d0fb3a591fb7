# 7-Scenes redkitchen 0-499 with the quality overlay on the shipped networks (#3's real
# frames: PSNR 2 dB above the v0 geometric initialiser with no more Gaussians, at most
# 150k per 500 frames), the one README figure still from the networks before (chunk 11:
# 20.83 dB with 19731 Gaussians against 18.01 with 20084; t19b.sh). The 500 frames packed
# are 48 MB, over the 64 MiB carry with the tree, so they travel in two calls on one warm
# machine: PART=a carries the wheels and frames 0-249 (.devcarry/7s250, as for the
# recipe), installs, compiles gsplat and unpacks; PART=b, called within the 30 s idle
# window, carries frames 250-499 (.devcarry/7s250b: `pack_frames.py pack` of a copy of
# frames 250-499 with the intrinsics), unpacks them beside the first half and runs one
# sweep with the peers in the same table (about 3-5 minutes on an H100): the v0 geometric
# defaults, the shipped networks with the overlay, the fresh run's file with it
# (fresh39/refiner, the thirty-ninth session's reproduction; a candidate to ship); the
# geometric initialiser with the same overlay (20.70 dB, nineteenth session) is left out
# to keep the sweep inside one call.
#   PART=a bash benchmarks/device_calls/t40a.sh   (carry .devcarry/whl7 .devcarry/7s250 [.devcarry/gsplat_so])
#   PART=b bash benchmarks/device_calls/t40a.sh   (carry .devcarry/7s250b)
D=/tmp/7s500
if [ "${PART:-a}" = a ]; then
  WHL=.devcarry/whl7 source benchmarks/device_calls/setup.sh
  python3 benchmarks/pack_frames.py unpack .devcarry/7s250 $D || exit 1
  exit 0
fi
export PYTHONPATH=/tmp/site:$PWD TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
python3 benchmarks/pack_frames.py unpack .devcarry/7s250b $D || exit 1
[ "$(ls $D/frame-*.depth.png | wc -l)" = 500 ] || { echo "expected 500 frames in $D"; exit 1; }
timeout 540 python3 benchmarks/sweep.py --device cuda --width 640 --height 480 --holdout-every 10 \
  --dataset 7scenes:$D --frames 0:500 --variant v0: \
  --variant net-mq:config=config/map_quality.yaml,initializer=network \
  --variant fresh-mq:config=config/map_quality.yaml,initializer=network,network.weights=benchmarks/device_calls/fresh39/refiner/gs4_nets.pt 2>&1 | grep -v Warning | tee $OUT/sweep_0-499.txt
