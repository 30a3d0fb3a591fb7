# Sourced after the wheels are installed into /tmp/site. gsplat 1.5.3's wheel is pure Python
# and compiles its CUDA kernels on first import (about 1 minute on an idle machine, 153 s
# beside a training run's data workers): every fresh machine paid it from the session's
# device time and whole-1's training clock. gsplat first tries `from gsplat import csrc`
# (a prebuilt module) and compiles only when that fails, so a module compiled once on this
# kind of machine and carried (.devcarry/gsplat_so/gsplat_cuda.so.xz with the stamp it was
# built under) is loaded through a small `gsplat/csrc.py` that imports it. A stamp that does
# not match (another torch, gsplat or GPU architecture) leaves the compile as it was.
# `gsplat_export_build DIR` writes the module just compiled and its stamp for carrying.
_gsplat_stamp() {
  python3 -c "import torch, gsplat; c = torch.cuda.get_device_capability(); print(f'torch={torch.__version__} gsplat={gsplat.__version__} sm={c[0]}{c[1]}')" 2> /dev/null
}
if [ -f .devcarry/gsplat_so/gsplat_cuda.so.xz ] && [ -f .devcarry/gsplat_so/stamp.txt ]; then
  if [ "$(_gsplat_stamp)" = "$(cat .devcarry/gsplat_so/stamp.txt)" ]; then
    gdir=$(python3 -c "import gsplat, os; print(os.path.dirname(gsplat.__file__))")
    xz -dc .devcarry/gsplat_so/gsplat_cuda.so.xz > $gdir/gsplat_cuda.so
    cat > $gdir/csrc.py <<'EOF'
"""The CUDA module compiled once by gsplat's own JIT build on this kind of machine, loaded
as gsplat's prebuilt `csrc` (benchmarks/device_calls/gsplat_prebuilt.sh)."""
import importlib.util, os, sys
_spec = importlib.util.spec_from_file_location("gsplat_cuda", os.path.join(os.path.dirname(__file__), "gsplat_cuda.so"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
sys.modules[__name__] = _mod
EOF
    echo "gsplat: prebuilt CUDA module ($(cat .devcarry/gsplat_so/stamp.txt))"
  else
    echo "gsplat: carried module built for '$(cat .devcarry/gsplat_so/stamp.txt)', here '$(_gsplat_stamp)': compiling"
  fi
fi
gsplat_export_build() {
  local so=${TORCH_EXTENSIONS_DIR:-/tmp/torch_ext}/gsplat_cuda/gsplat_cuda.so
  [ -f "$so" ] || { echo "gsplat: no JIT build at $so to export"; return 0; }
  mkdir -p "$1" && xz -T0 -6 -c "$so" > "$1/gsplat_cuda.so.xz" && _gsplat_stamp > "$1/stamp.txt"
  ls -la "$1"
}
