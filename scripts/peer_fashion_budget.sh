#!/usr/bin/env bash
# BENCHMARKS.md "Fashion-MNIST, equal budget": ddpm-rs's configs/fashion-mnist.toml (class
# conditioning off, as the peer's Trainer is unconditional) against lucidrains'
# denoising-diffusion-pytorch, unmodified (scripts/peer_fashion.py), on the same data, batch,
# learning rate, EMA decay (updated every step), T and schedule, parameters within 10 %.
#
# Both trainers start at the same moment with THREADS intra-op threads each (default 1: the two
# share this machine's 2 cores, so whatever else runs slows both alike) and are stopped after
# MINUTES of wall time. Both save every SAVE steps. Then, from the same sampler on both sides
# (DDIM, eta 0, 50 steps, x0 clipped on both), N samples for each of 3 seeds go through our
# Fashion-MNIST measure (docs/metrics.md) beside its floor:
#   - equal wall time: each side's last save within MINUTES;
#   - equal steps: ours at the peer's last saved step.
# Then the issue's second shared sampler, ancestral sampling over all T = 1000 steps (x0
# clipped, the posterior variance beta~_t as the peer's p_sample uses), for ANCESTRAL_N samples
# of each seed in ANCESTRAL_SEEDS at the same checkpoints (default 0: not run; it costs T
# network evaluations per image: 50 samples took ours 6-7 minutes per checkpoint and the peer
# 16 on 2 cores, 2026-12-07).
# Every result is a JSON file under OUT; a result already there is kept (rerun to resume).
#
#   bash scripts/peer_fashion_budget.sh [OUT]       MINUTES=40 N=500 THREADS=1 SAVE=50 DIM=28
#                                                   ANCESTRAL_N=0 ANCESTRAL_SEEDS=0 SAMPLE_THREADS=2
#   (SAMPLE_THREADS: the peer's sampling threads; ours follow OMP_NUM_THREADS, all cores if unset)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-runs/peer-fashion}")
MINUTES=${MINUTES:-40}
N=${N:-500}
THREADS=${THREADS:-1}
SAVE=${SAVE:-50}
DIM=${DIM:-28}
ANCESTRAL_N=${ANCESTRAL_N:-0}
ANCESTRAL_SEEDS=${ANCESTRAL_SEEDS:-0}
SAMPLE_THREADS=${SAMPLE_THREADS:-2}
PY=.ddpm/venv/bin/python
RUNS="$OUT/runs"
OURS=ours
mkdir -p "$OUT" "$RUNS"

if [ ! -s "$OUT/trained.json" ]; then
  [ -e "$RUNS/$OURS" ] && { echo "$RUNS/$OURS exists from a run that did not finish: remove $OUT" >&2; exit 1; }
  bash scripts/peer_fashion_config.sh "$OUT/ours.toml" "$THREADS" "$SAVE"
  # The peer's PNG folder is written before the clock starts.
  $PY scripts/peer_fashion.py --out "$OUT/peer" --prepare-only
  cargo build --release -q -p ddpm-train -p ddpm-eval
  start=$(date +%s.%N)
  timeout -s INT "$((MINUTES * 60))" target/release/ddpm-train train --config "$OUT/ours.toml" \
    --runs-dir "$RUNS" > "$OUT/ours-train.log" 2>&1 &
  ours_pid=$!
  timeout -s INT "$((MINUTES * 60))" $PY scripts/peer_fashion.py --out "$OUT/peer" --dim "$DIM" \
    --threads "$THREADS" --steps 1000000 --save-every "$SAVE" --samples 0 > "$OUT/peer-train.log" 2>&1 &
  peer_pid=$!
  wait $ours_pid || true
  wait $peer_pid || true
  # The last save of each side within the budget, by its file's time.
  python3 - "$OUT" "$start" "$MINUTES" "$SAVE" <<'EOF'
import json, pathlib, re, sys
out, start, minutes, save = pathlib.Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
end = start + 60 * minutes
def saves(paths, step_of):
    rows = sorted((step_of(p), p.stat().st_mtime - start) for p in paths if p.stat().st_mtime <= end)
    if not rows:
        sys.exit(f"{out}: no save within {minutes} minutes")
    return rows
ours = saves(out.glob("runs/ours/checkpoints/ckpt-*.safetensors"), lambda p: int(re.findall(r"\d+", p.name)[0]))
peer = saves(out.glob("peer/results/model-*.pt"), lambda p: save * int(re.findall(r"\d+", p.name)[0]))
res = {"minutes": minutes, "save_every": save,
       "ours_last": {"step": ours[-1][0], "seconds": ours[-1][1]},
       "peer_last": {"step": peer[-1][0], "seconds": peer[-1][1]},
       "ours_saves": ours, "peer_saves": peer}
(out / "trained.json").write_text(json.dumps(res, indent=1))
print(json.dumps({k: res[k] for k in ("ours_last", "peer_last")}))
EOF
fi

read -r ours_step peer_step < <(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['ours_last']['step'], r['peer_last']['step'])" "$OUT/trained.json")
keep() { [ -s "$1" ]; }
for seed in 0 1 2; do
  for step in "$ours_step" "$peer_step"; do
    f="$OUT/ours-step$step-seed$seed.json"
    keep "$f" || target/release/ddpm-eval fid --runs-dir "$RUNS" --checkpoint "$RUNS/$OURS/checkpoints/ckpt-$(printf %09d "$step").safetensors" \
      --sampler ddim --steps 50 --seed "$seed" -n "$N" --out "$OUT/ours-fid/step$step-seed$seed" --json > "$f"
  done
  f="$OUT/peer-step$peer_step-seed$seed.json"
  if ! keep "$f"; then
    $PY scripts/peer_fashion.py --out "$OUT/peer" --dim "$DIM" --threads "$SAMPLE_THREADS" --from-milestone "$((peer_step / SAVE))" \
      --samples "$N" --samplers ddim50 --seed "$seed" > "$OUT/peer-sample-seed$seed.log"
    target/release/ddpm-eval fid --samples "$OUT/peer/samples-ddim50-m$((peer_step / SAVE))-seed$seed.npz" \
      --ref fashion-mnist --json > "$f"
  fi
done
if [ "$ANCESTRAL_N" != 0 ]; then
  for seed in ${ANCESTRAL_SEEDS//,/ }; do
    for step in "$ours_step" "$peer_step"; do
      f="$OUT/ours-ancestral-step$step-seed$seed.json"
      keep "$f" || target/release/ddpm-eval fid --runs-dir "$RUNS" --checkpoint "$RUNS/$OURS/checkpoints/ckpt-$(printf %09d "$step").safetensors" \
        --sampler ddpm --steps 1000 --variance fixed_small --seed "$seed" -n "$ANCESTRAL_N" \
        --out "$OUT/ours-fid/ancestral-step$step-n$ANCESTRAL_N-seed$seed" --json > "$f"
    done
    f="$OUT/peer-ancestral-step$peer_step-seed$seed.json"
    if ! keep "$f"; then
      $PY scripts/peer_fashion.py --out "$OUT/peer" --dim "$DIM" --threads "$SAMPLE_THREADS" --from-milestone "$((peer_step / SAVE))" \
        --samples "$ANCESTRAL_N" --samplers ancestral --seed "$seed" > "$OUT/peer-ancestral-seed$seed.log"
      target/release/ddpm-eval fid --samples "$OUT/peer/samples-ancestral-m$((peer_step / SAVE))-seed$seed.npz" \
        --ref fashion-mnist --json > "$f"
    fi
  done
fi
python3 - "$OUT" "$ours_step" "$peer_step" "$THREADS" "$([ "$ANCESTRAL_N" != 0 ] && echo "$ANCESTRAL_SEEDS")" <<'EOF'
import json, pathlib, statistics as st, sys
out, ours_step, peer_step, threads = pathlib.Path(sys.argv[1]), *map(int, sys.argv[2:5])
ancestral_seeds = [int(s) for s in sys.argv[5].split(",") if s]
trained = json.loads((out / "trained.json").read_text())
def side(prefix, step, seeds=range(3)):
    # The JSON object is the last line of each file.
    rows = [json.loads((out / f"{prefix}-step{step}-seed{s}.json").read_text().splitlines()[-1])
            for s in seeds]
    ratio = [r["fashion_fd"] / r["fashion_fd_floor"] for r in rows]
    kid = [r["fashion_kid"] for r in rows]
    sd = lambda v: st.stdev(v) if len(v) > 1 else None
    return {"step": step, "seeds": list(seeds), "fd": [r["fashion_fd"] for r in rows],
            "fd_floor": rows[0]["fashion_fd_floor"], "fd_ratio_mean": st.mean(ratio), "fd_ratio_std": sd(ratio),
            "kid_mean": st.mean(kid), "kid_std": sd(kid), "kid_floor": rows[0]["fashion_kid_floor"],
            "n": rows[0]["fashion_images"]}
summary = {"minutes": trained["minutes"], "threads_each": threads,
           "ours_equal_wall": side("ours", ours_step), "ours_equal_steps": side("ours", peer_step),
           "peer": side("peer", peer_step),
           "ours_train_seconds": trained["ours_last"]["seconds"], "peer_train_seconds": trained["peer_last"]["seconds"]}
if ancestral_seeds:
    summary["ancestral"] = {"ours_equal_wall": side("ours-ancestral", ours_step, ancestral_seeds),
                            "ours_equal_steps": side("ours-ancestral", peer_step, ancestral_seeds),
                            "peer": side("peer-ancestral", peer_step, ancestral_seeds)}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
EOF
