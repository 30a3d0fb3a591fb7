#!/usr/bin/env bash
# Main job on the embedded default: generate a synthetic RGB-D sequence, run SLAM on it
# (GPU if present, else CPU at reduced resolution), print ATE/PSNR and write out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/env.sh
exec .venv/bin/gs4 demo --out "${1:-out/demo}"
