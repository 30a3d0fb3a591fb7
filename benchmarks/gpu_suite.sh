#!/usr/bin/env bash
# The GPU figures of the foundation in one go, so they come from one machine and one run:
#   1. gsplat against the PyTorch rasteriser (values and gradients, relative errors);
#   2. our tracker against cv2.Odometry on the same frames (ATE, RPE, FPS);
#   3. the full `gs4 run` on the sequence (ATE, PSNR/SSIM/depth L1 every 5th frame,
#      Gaussians, FPS, per-stage ms) and the same with every 10th frame held out
#      (novel-view PSNR).
# Usage: benchmarks/gpu_suite.sh DATASET_SPEC OUT_DIR     e.g. 7scenes:/data/redkitchen out/gpu
set -uo pipefail
cd "$(dirname "$0")/.."
spec=${1:?dataset spec}; out=${2:?output folder}
mkdir -p "$out"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py benchmarks/compare_renderers.py --out "$out/compare.json" > "$out/compare.log" 2>&1
echo "compare_renderers exit $?"; tail -25 "$out/compare.log"
$py benchmarks/peer_odometry.py --dataset "$spec" --device cuda --out "$out" > "$out/peer.log" 2>&1
echo "peer_odometry exit $?"; tail -8 "$out/peer.log"
$py -m gs4_ros.cli.main run --dataset "$spec" --device cuda --out "$out/run" --no-map > "$out/run.log" 2>&1
echo "run exit $?"; sed -n '/== gs4 run summary ==/,$p' "$out/run.log"
$py -m gs4_ros.cli.main run --dataset "$spec" --device cuda --holdout-every 10 --no-report --no-map \
    --out "$out/holdout" > "$out/holdout.log" 2>&1
echo "holdout run exit $?"; grep -E "ATE|PSNR|held-out|map  |speed" "$out/holdout.log"
