#!/usr/bin/env bash
# README's Fashion-MNIST numbers and pictures, from a run of configs/fashion-mnist.toml:
#   - FD and KID beside the floor (ratio to it) over 3 sampling seeds;
#   - classifier-free guidance at w in {1, 2, 4}: the class accuracy beside the distance;
#   - bits/dim on the first NLL_N test images (the full variational bound, T terms);
#   - samples, one row per class at w = GUIDE_W, progressive generation, interpolation;
#   - the sampler sweep: every sampler by network evaluations (table and plot).
# Every result is a JSON file under OUT (default runs/RUN/results); figures go to docs/.
#
#   bash scripts/fashion_results.sh [RUN] [OUT]
# N (samples per measurement, 2000), GUIDED_N (the guided ones, N), NLL_N (100), GUIDE_W (2),
# SWEEP_N and SWEEP_SEEDS (the sampler sweep's samples per cell, 250, and seeds, 0,1; SWEEP=0
# leaves the sweep out),
# SAMPLER and STEPS (ddim 20, x0 clipped as ddim and ddpm clip by default) override the
# defaults. The guidance paper's trade, w in {1, 2, 4}, all at GUIDED_N (seed 0).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-fashion-mnist}
OUT=${2:-runs/$RUN/results}
N=${N:-2000}
GUIDED_N=${GUIDED_N:-$N}
NLL_N=${NLL_N:-100}
GUIDE_W=${GUIDE_W:-2}
SWEEP_N=${SWEEP_N:-250}
SWEEP_SEEDS=${SWEEP_SEEDS:-0,1}
SWEEP=${SWEEP:-1}
SAMPLER=${SAMPLER:-ddim}
STEPS=${STEPS:-20}
mkdir -p "$OUT" docs
x() { cargo xtask "$@"; }
fid() { x fid --checkpoint "$RUN" --sampler "$SAMPLER" --steps "$STEPS" --json "$@"; }

# A result already written is kept (rerunning the script resumes it).
keep() { [ -s "$1" ]; }
for seed in 0 1 2; do
  f="$OUT/fid-w1-seed$seed.json"
  keep "$f" || fid --seed "$seed" -n "$N" > "$f"
done
# The guided rows at GUIDED_N, w = 1 among them where GUIDED_N is not N (so that the trade is
# read at one n: FD's floor grows as n shrinks).
for w in 1 2 4; do
  [ "$w" = 1 ] && [ "$GUIDED_N" = "$N" ] && continue
  f="$OUT/fid-w$w-n$GUIDED_N-seed0.json"
  keep "$f" || fid --seed 0 -n "$GUIDED_N" --guidance "$w" > "$f"
done
f="$OUT/nll-test.json"
keep "$f" || x nll --checkpoint "$RUN" --split test -n "$NLL_N" --json > "$f"

# Pictures: unconditional-looking random classes, one row per class, the paper's figures.
x sample --checkpoint "$RUN" --sampler "$SAMPLER" --steps "$STEPS" -n 100 --random-classes \
  --out "$OUT/samples" --no-png
cp "$OUT/samples/grid.png" docs/fashion-samples.png
for k in 0 1 2 3 4 5 6 7 8 9; do
  x sample --checkpoint "$RUN" --sampler "$SAMPLER" --steps "$STEPS" -n 10 --class "$k" \
    --guidance "$GUIDE_W" --seed "$k" --out "$OUT/class-$k" --no-png
done
.ddpm/venv/bin/python scripts/stack_rows.py docs/fashion-classes.png "$OUT"/class-{0,1,2,3,4,5,6,7,8,9}/samples.npz
x figures progressive --checkpoint "$RUN" --out "$OUT/progressive"
x figures interpolate --checkpoint "$RUN" --out "$OUT/interpolate"
cp "$OUT/progressive/progressive.png" docs/fashion-progressive.png
cp "$OUT/interpolate/interpolation.png" docs/fashion-interpolation.png
# The sampler sweep: every sampler at 5, 10, 20 and 50 NFE and ancestral at T, SWEEP_N samples
# per cell over SWEEP_SEEDS (README's table and plot).
if [ "$SWEEP" != 0 ]; then
  keep "$OUT/sweep/sweep.json" ||
    x sampler-sweep --checkpoint "$RUN" -n "$SWEEP_N" --seeds "$SWEEP_SEEDS" --out "$OUT/sweep"
  cp "$OUT/sweep/sweep.svg" docs/fashion-sampler-sweep.svg
fi
python3 - "$OUT" "$N" "$GUIDED_N" <<'EOF'
import json, sys, statistics as st, pathlib
out, n, guided_n = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = [json.loads((out / f"fid-w1-seed{s}.json").read_text()) for s in range(3)]
ratio = [r["fashion_fd"] / r["fashion_fd_floor"] for r in rows]
kid = [r["fashion_kid"] for r in rows]
summary = {
    "fd": [r["fashion_fd"] for r in rows], "fd_floor": rows[0]["fashion_fd_floor"],
    "fd_ratio_mean": st.mean(ratio), "fd_ratio_std": st.stdev(ratio),
    "kid_mean": st.mean(kid), "kid_std_over_seeds": st.stdev(kid),
    "kid_floor": rows[0]["fashion_kid_floor"], "n": rows[0]["fashion_images"],
    "guidance_n": int(guided_n),
    "guidance": {},
    "nll": json.loads((out / "nll-test.json").read_text()),
}
keys = ("fashion_fd", "fashion_fd_floor", "fashion_kid", "fashion_class_accuracy")
for w in (1, 2, 4):
    f = out / f"fid-w{w}-n{guided_n}-seed0.json"
    r = json.loads(f.read_text()) if f.exists() else (rows[0] if w == 1 and n == guided_n else None)
    if r is not None:
        summary["guidance"][w] = {k: r.get(k) for k in keys}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
EOF
