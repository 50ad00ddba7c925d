#!/usr/bin/env bash
# The whole GPU suite in one command, on a machine with PyTorch 2.11.0 (CUDA) and no Rust:
#
#   cargo xtask device-bundle     # here: release binaries, the digits run, reference packages
#   bash scripts/gpu_suite.sh     # there, with .device-bin/ carried; results under $OUT
#
# Arguments go to bench_suite.py (e.g. --seconds 3 --rounds 1). DEVICE=cpu runs the same
# bundle on the CPU (a rehearsal of the GPU run on a machine without one).
#
# It first proves that our binaries really run CUDA (ddpm-doctor), then runs the side-by-side
# suite (scripts/bench_suite.py --device cuda) and writes $OUT/doctor.txt, $OUT/bench.log,
# $OUT/bench.json and $OUT/BENCHMARKS.md (this checkout's file with the GPU section rewritten).
set -euo pipefail
cd "$(dirname "$0")/.."
B=.device-bin
OUT=${OUT:-target/gpu-suite}
PY=${DDPM_PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
for f in "$B/bin/ddpm-doctor" "$B/bin/ddpm-bench"; do
  [ -x "$f" ] || { echo "gpu_suite: $f is missing: run \`cargo xtask device-bundle\` first and carry $B" >&2; exit 2; }
done
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$PWD/$B/site${PYTHONPATH:+:$PYTHONPATH}"

"$B/bin/ddpm-doctor" 2>&1 | tee "$OUT/doctor.txt"
if [ "$DEVICE" = cuda ] && ! grep -q '^cuda *available' "$OUT/doctor.txt"; then
  echo "gpu_suite: ddpm-doctor does not see CUDA; nothing is timed" >&2
  exit 1
fi
if ! "$PY" -c 'import diffusers, pytorch_fid, scipy' 2>"$OUT/imports.txt"; then
  echo "gpu_suite: the PyTorch reference side cannot start: $(tail -n 1 "$OUT/imports.txt")" >&2
  exit 1
fi
cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
digits=()
[ -f "$B/digits/config.toml" ] && digits=(--digits-run "$B/digits")
threads=$(nproc)
[ "$DEVICE" = cuda ] || threads=2
"$PY" scripts/bench_suite.py --device "$DEVICE" --threads "$threads" --bench-bin "$B/bin/ddpm-bench" \
  "${digits[@]}" --out "$OUT/BENCHMARKS.md" --json-out "$OUT/bench.json" "$@" 2>&1 | tee "$OUT/bench.log"
