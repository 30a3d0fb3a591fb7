#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install the package.
# Usage: scripts/env.sh [EXTRAS]   e.g. scripts/env.sh test,ros
# torch is pinned to 2.13.0 first: on the project's machines pip takes a local CPU wheel
# for it instead of the multi-GB CUDA build; an existing torch >= 2.2 is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.2"
fi
extras=${1:-}
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
.venv/bin/python -m pip install -q -e "$spec"
