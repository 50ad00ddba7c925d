#!/usr/bin/env bash
# The one command that proves the GPU path end to end, on a machine with PyTorch 2.11.0 (CUDA)
# and no Rust:
#
#   cargo xtask device-bundle     # here: release binaries, the digits data and run, reference packages
#   bash scripts/gpu_suite.sh     # there, with .device-bin/ carried; logs and results under $OUT
#
# Checks, in order; the first that fails stops the suite with a non-zero exit:
#   doctor     ddpm-doctor sees CUDA and runs a CUDA matmul
#   digits     the default digits job trains on the device and samples (DPM-Solver++), and its
#              classifier distance is computed there
#   cifar10    the CIFAR-10 config (35.7M UNet, batch 128, bf16) on synthetic CIFAR-format data:
#              60 steps straight, and 30 + resume to 60, with deterministic kernels; the two
#              final checkpoints are compared (bit-identical expected)
#   nccl       the same config under `torchrun --nproc-per-node 1`: a one-rank NCCL process group
#              (Gloo with DEVICE=cpu) whose gradient all-reduce runs every step; its checkpoint
#              at the first interval equals the single-process one bit for bit
#   nccl-timeout  an all-reduce queued behind GPU work longer than the group's timeout returns an
#              error (NCCL's blocking wait is on, so a hung peer is named, not waited on); on the
#              CPU the Gloo all-reduce must succeed (ddpm-check collective-timeout)
#   adam       fused and per-tensor Adam agree within 1e-5 after 10 steps (ddpm-check)
#   graph      a class-conditional model sampled with and without --cuda-graph gives the same
#              images within 1e-3 (guidance on, so labels and both branches go through the graph)
#   inception  Inception features on the device agree with the CPU within 1e-3 (ddpm-check)
#   bench      the side-by-side benchmark suite (scripts/bench_suite.py)
# and prints one table. DEVICE=cpu rehearses the same suite on the CPU (the graph check needs
# CUDA and is reported as skipped). QUICK=1 shortens the runs (for rehearsals). Extra arguments
# go to bench_suite.py (e.g. --seconds 2 --rounds 1); SKIP_BENCH=1 leaves the bench out.
set -uo pipefail
cd "$(dirname "$0")/.."
B=.device-bin
OUT=${OUT:-target/gpu-suite}
PY=${DDPM_PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
for f in ddpm-doctor ddpm-train ddpm-sample ddpm-eval ddpm-check ddpm-bench; do
  [ -x "$B/bin/$f" ] || { echo "gpu_suite: $B/bin/$f is missing: run \`cargo xtask device-bundle\` first and carry $B" >&2; exit 2; }
done
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$PWD/$B/site${PYTHONPATH:+:$PYTHONPATH}"
export DDPM_HOME="$OUT/home"
export CUBLAS_WORKSPACE_CONFIG=:4096:8
export RUST_LOG=${RUST_LOG:-info}
mkdir -p "$DDPM_HOME/data"
cp "$B/home/data/digits.bin" "$DDPM_HOME/data/digits.bin"
RUNS="$OUT/runs"
rm -rf "$RUNS"
TABLE="$OUT/summary.txt"
printf '%-10s %-6s %8s  %s\n' check result seconds detail > "$TABLE"

# row NAME RESULT SECONDS DETAIL
row() { printf '%-10s %-6s %8s  %s\n' "$1" "$2" "$3" "$4" | tee -a "$TABLE"; }
finish() { echo; cat "$TABLE"; exit "$1"; }
# step NAME DETAIL-FILE COMMAND...: runs COMMAND with its log in $OUT/NAME.log, one row.
step() {
  local name=$1 detail=$2; shift 2
  local t0=$SECONDS
  if "$@" >"$OUT/$name.log" 2>&1; then
    row "$name" ok $((SECONDS - t0)) "$(tail -n 1 "$detail" 2>/dev/null | cut -c1-150)"
  else
    row "$name" FAIL $((SECONDS - t0)) "see $OUT/$name.log: $(tail -n 1 "$OUT/$name.log" | cut -c1-150)"
    finish 1
  fi
}
bin() { "$B/bin/$@"; }
if [ "${QUICK:-0}" = 1 ]; then
  DIGITS_STEPS=40 CIFAR_STEPS=2 CIFAR_BATCH=(--batch-size 4) COND_STEPS=5 DIGITS_N=64
else
  DIGITS_STEPS=1500 CIFAR_STEPS=30 CIFAR_BATCH=() COND_STEPS=200 DIGITS_N=898
fi

# 1. The binaries really run CUDA.
doctor() {
  bin ddpm-doctor
  if [ "$DEVICE" = cuda ]; then grep -q '^cuda *available' "$OUT/doctor.log" || { echo "ddpm-doctor does not see CUDA"; return 1; }; fi
}
step doctor "$OUT/doctor.log" doctor

# 2. The default digits job trains and samples on the device.
digits() {
  bin ddpm-train train --device "$DEVICE" --steps "$DIGITS_STEPS" --name digits --runs-dir "$RUNS" &&
  bin ddpm-sample sample --checkpoint digits --runs-dir "$RUNS" --device "$DEVICE" --sampler dpm-solver++ -n 64 --out "$OUT/digits-samples" --no-png &&
  bin ddpm-eval fid --checkpoint digits --runs-dir "$RUNS" --device "$DEVICE" --sampler dpm-solver++ -n "$DIGITS_N" --out "$OUT/digits-fid" |
    tee "$OUT/digits-fid.txt" | grep 'digits FD'
}
step digits "$OUT/digits.log" digits

# 3. The CIFAR-10 recipe on synthetic CIFAR-format data: steps, checkpoints, exact resume.
cifar() {
  "$PY" - "$OUT/cifar-data" <<'EOF' || return 1
import os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    b = bytearray(os.urandom(1000 * 3073))
    for i in range(0, len(b), 3073):
        b[i] %= 10
    open(os.path.join(d, name), "wb").write(b)
EOF
  sed -e "s/^log_every = .*/log_every = 10/" -e "s/^sample_every = .*/sample_every = 0/" \
      -e "s/^checkpoint_every = .*/checkpoint_every = $CIFAR_STEPS/" \
      -e "s/^precision = .*/precision = \"bf16\"\nsample_count = 16\ndeterministic = true/" \
      configs/cifar10.toml > "$OUT/cifar10-suite.toml"
  local c=(--config "$OUT/cifar10-suite.toml" --data "$OUT/cifar-data" --device "$DEVICE" --runs-dir "$RUNS" "${CIFAR_BATCH[@]}")
  bin ddpm-train train "${c[@]}" --name straight --steps $((2 * CIFAR_STEPS)) &&
  bin ddpm-train train "${c[@]}" --name resumed --steps "$CIFAR_STEPS" &&
  bin ddpm-train train "${c[@]}" --name resumed --steps $((2 * CIFAR_STEPS)) &&
  grep -q "resumed .* from step $CIFAR_STEPS" "$OUT/cifar10.log" &&
  bin ddpm-check same-weights "$RUNS/straight/checkpoints/ckpt-$(printf %09d $((2 * CIFAR_STEPS))).safetensors" \
    "$RUNS/resumed/checkpoints/ckpt-$(printf %09d $((2 * CIFAR_STEPS))).safetensors" --tol 0
}
step cifar10 "$OUT/cifar10.log" cifar

# 3b. The same config as one rank of a torchrun job: NCCL on CUDA (Gloo on the CPU).
nccl() {
  local backend=nccl
  [ "$DEVICE" = cuda ] || backend=gloo
  local c=(--config "$OUT/cifar10-suite.toml" --data "$OUT/cifar-data" --device "$DEVICE" --runs-dir "$RUNS" "${CIFAR_BATCH[@]}")
  "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 --no-python "$B/bin/ddpm-train" train \
    "${c[@]}" --name nccl --steps "$CIFAR_STEPS" &&
  grep -q "(1 ranks, $backend)" "$OUT/nccl.log" &&
  bin ddpm-check same-weights "$RUNS/nccl/checkpoints/ckpt-$(printf %09d "$CIFAR_STEPS").safetensors" \
    "$RUNS/resumed/checkpoints/ckpt-$(printf %09d "$CIFAR_STEPS").safetensors" --tol 0
}
step nccl "$OUT/nccl.log" nccl

# 3c. NCCL failures are reported, not waited on: an all-reduce behind GPU work longer than the
# group's timeout returns an error (TORCH_NCCL_BLOCKING_WAIT, set by ddpm-dist). One GPU cannot
# lose a peer, so a dead rank under NCCL stays unchecked.
step nccl-timeout "$OUT/nccl-timeout.log" bin ddpm-check collective-timeout --device "$DEVICE"

# 4. Fused and per-tensor Adam.
step adam "$OUT/adam.log" bin ddpm-check adam --device "$DEVICE"

# 5. CUDA graphs for a class-conditional model, with guidance.
graph() {
  sed -e 's/^name = .*/name = "cond"/' -e 's/^num_groups = 8/num_groups = 8\nnum_classes = 10/' configs/tiny.toml > "$OUT/cond.toml"
  bin ddpm-train train --config "$OUT/cond.toml" --device "$DEVICE" --steps "$COND_STEPS" --runs-dir "$RUNS" &&
  for g in "" --cuda-graph; do
    bin ddpm-sample sample --checkpoint cond --runs-dir "$RUNS" --device "$DEVICE" --sampler dpm-solver++ \
      --random-classes --guidance 2 -n 48 --batch-size 16 --no-png $g --out "$OUT/cond-samples$g" || return 1
  done &&
  bin ddpm-check same-samples "$OUT/cond-samples/samples.npz" "$OUT/cond-samples--cuda-graph/samples.npz" --tol 1e-3
}
if [ "$DEVICE" = cuda ]; then step graph "$OUT/graph.log" graph; else row graph skip 0 "CUDA graphs need CUDA"; fi

# 6. Inception on the device against the CPU.
step inception "$OUT/inception.log" bin ddpm-check inception --device "$DEVICE"

# 7. The side-by-side benchmark.
bench() {
  "$PY" -c 'import diffusers, pytorch_fid, scipy' || { echo "the PyTorch reference side cannot start"; return 1; }
  cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
  local threads=$(nproc)
  [ "$DEVICE" = cuda ] || threads=2
  "$PY" scripts/bench_suite.py --device "$DEVICE" --threads "$threads" --bench-bin "$B/bin/ddpm-bench" \
    --digits-run "$RUNS/digits" --out "$OUT/BENCHMARKS.md" --json-out "$OUT/bench.json" "$@"
}
if [ "${SKIP_BENCH:-0}" = 1 ]; then row bench skip 0 "SKIP_BENCH=1"; else step bench "$OUT/bench.log" bench "$@"; fi
finish 0
