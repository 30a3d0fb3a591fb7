#!/usr/bin/env bash
# The test suite, in its own environment (.venv with the test and ROS 2 extras).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/env.sh test,ros
exec .venv/bin/python -m pytest -q -ra test "$@"
