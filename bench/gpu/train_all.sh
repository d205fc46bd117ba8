#!/usr/bin/env bash
# The GPU kit's entry point (bench/gpu/README.md). Works in the repository root, wherever it
# is started from:
#   1. install, unless the project is importable already (or --no-install): the carried wheels
#      (.gpu_carry/wheels/*.whl: compressai, soundfile, cffi, pycparser, soxr) and the project
#      itself (C++ core built with CMake + ninja), both into a --target folder ($GPU_KIT_SITE,
#      default /tmp/gpu_kit_site) put first on PYTHONPATH; the build falls back to a plain
#      CMake build when pip's fails;
#   2. python3 bench/gpu/train_all.py with the remaining arguments (--out defaults to $OUT).
# Options of its own: --no-install, --install (even if importable), --install-only, --out DIR.
# Environment: PYTHON (default python3), GPU_KIT_SITE, GPU_KIT_CARRY (default .gpu_carry),
# GPU_KIT_BUILD=cmake (skip pip's build).
set -uo pipefail
T0=$(date +%s.%N)
cd "$(dirname "$0")/../.." || exit 2
PY=${PYTHON:-python3}
CARRY=${GPU_KIT_CARRY:-.gpu_carry}
SITE=${GPU_KIT_SITE:-/tmp/gpu_kit_site}
INSTALL=auto
ONLY_INSTALL=0
OUTDIR=${OUT:-}
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) INSTALL=no ;;
    --install) INSTALL=yes ;;
    --install-only) INSTALL=yes; ONLY_INSTALL=1 ;;
    --out) OUTDIR=${2:?--out needs a folder}; shift ;;
    --out=*) OUTDIR=${1#--out=} ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
[ -n "$OUTDIR" ] || { echo "train_all.sh: no --out and no \$OUT" >&2; exit 2; }
mkdir -p "$OUTDIR" || exit 2
export PYTHONUNBUFFERED=1  # (the driver hides the progress bars: GPU_KIT_BARS=1 shows them)
ILOG="$OUTDIR/install.log"
: >"$ILOG"
say() { echo "$*" | tee -a "$ILOG"; }
now() { date +%s.%N; }
secs() { awk "BEGIN{printf \"%.1f\", $2 - $1}"; }

# What the kit needs, checked outside the checkout (its source tree has no compiled core).
importable() {
  (cd / && "$PY" - <<'EOF'
import importlib, importlib.util, sys
missing = [m for m in ("compressai",) if importlib.util.find_spec(m) is None]
for m in ("torch", "numpy", "ml_dtypes", "tqdm", "PIL", "soundfile", "soxr", "weightzip._C", "neurocodec"):
    try:
        importlib.import_module(m)
    except Exception as e:  # noqa: BLE001
        missing.append(f"{m} ({type(e).__name__}: {e})")
print("missing: " + "; ".join(missing) if missing else "importable")
sys.exit(1 if missing else 0)
EOF
  ) 2>&1 | tee -a "$ILOG" | tail -1
  return "${PIPESTATUS[0]}"
}

say "gpu kit: $(date) on $(hostname), $(nproc) cores, $("$PY" -c 'import sys; print(sys.version.split()[0])')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$ILOG"

if [ "$INSTALL" = auto ]; then
  if importable >/dev/null; then INSTALL=no; else INSTALL=yes; fi
fi
INSTALL_NOTE="skipped (importable)"
if [ "$INSTALL" = yes ]; then
  mkdir -p "$SITE"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  t=$(now)
  shopt -s nullglob
  wheels=("$CARRY"/wheels/*.whl)
  if [ ${#wheels[@]} -gt 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "${wheels[@]}" 2>&1 | grep -v "already exists" | tee -a "$ILOG"
  fi
  t_wheels=$(secs "$t" "$(now)")
  say "wheels: ${#wheels[@]} installed into $SITE in ${t_wheels} s"
  t=$(now)
  export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
  how=${GPU_KIT_BUILD:-pip}
  if [ "$how" = cmake ] || ! "$PY" -m pip install -q --no-build-isolation --no-deps --no-index --no-cache-dir \
        --upgrade --target "$SITE" . >>"$ILOG" 2>&1; then
    [ "$how" = cmake ] || say "pip build failed (see install.log); plain CMake build"
    how=cmake
    B=/tmp/gpu_kit_build
    gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
    if cmake -S . -B "$B" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DWZ_BUILD_PYTHON=ON \
         -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >>"$ILOG" 2>&1 &&
       cmake --build "$B" -j "$CMAKE_BUILD_PARALLEL_LEVEL" >>"$ILOG" 2>&1; then
      rm -rf "$SITE/weightzip" "$SITE/neurocodec"
      cp -r weightzip neurocodec "$SITE"/ && cp "$B"/_C*.so "$SITE/weightzip/" &&
        mkdir -p "$SITE/neurocodec/_codecs" && cp -r codecs/* "$SITE/neurocodec/_codecs/"
    else
      say "CMake build failed too"; tail -30 "$ILOG"; exit 3
    fi
  fi
  t_build=$(secs "$t" "$(now)")
  say "project: built ($how, $CMAKE_BUILD_PARALLEL_LEVEL jobs) and installed in ${t_build} s"
  INSTALL_NOTE="wheels ${t_wheels} s, build+install ${t_build} s ($how)"
  if ! importable; then say "still not importable after the install"; exit 3; fi
fi
[ "$ONLY_INSTALL" = 1 ] && { say "install: $INSTALL_NOTE (--install-only)"; exit 0; }
export GPU_KIT_INSTALL="$INSTALL_NOTE"
say "install: $INSTALL_NOTE; driver starts $(secs "$T0" "$(now)") s after the kit"
exec "$PY" bench/gpu/train_all.py --t0 "$T0" --out "$OUTDIR" "${ARGS[@]}"
