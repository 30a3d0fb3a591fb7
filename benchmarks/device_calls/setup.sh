# sourced at the start of every device call
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${WHL:-.whl}/*.whl || exit 1
[ -n "${WITH_GTSAM:-}" ] && { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devcarry/gtsam/*.whl || exit 1; }
export PYTHONPATH=/tmp/site:$PWD
source benchmarks/device_calls/gsplat_prebuilt.sh   # a carried .devcarry/gsplat_so skips the compile
export TORCH_EXTENSIONS_DIR=/tmp/torch_ext PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# GSPLAT_NOW=0: no compile here (a script that compiles beside other work does it itself)
[ "${GSPLAT_NOW:-1}" = 0 ] || python3 -c "import gsplat, torch; from gsplat.cuda._backend import _C; print('gsplat ok', torch.__version__)" 2>&1 | tail -1
