#!/usr/bin/env bash
# One row of BENCHMARKS.md's "equal steps" diagnosis: our side of the equal-budget comparison
# (scripts/peer_fashion_config.sh: configs/fashion-mnist.toml, class conditioning off) with
# some settings changed, trained alone for STEPS steps, then measured the way
# scripts/peer_fashion_budget.sh measures: DDIM, eta 0, 50 steps, x0 clipped, N samples for each of 3 seeds through our
# Fashion-MNIST measure. Compare its summary with the budget run's rows at the peer's step.
#
#   bash scripts/peer_fashion_probe.sh NAME 'KEY = VALUE' ['SECTION.KEY = VALUE' ...]
#        STEPS=300 N=500 THREADS=2 OUT=runs/peer-probe/NAME CONFIG_ONLY=0 (1: print the config, stop)
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?usage: peer_fashion_probe.sh NAME 'KEY = VALUE' ...}
shift
STEPS=${STEPS:-300}
N=${N:-500}
THREADS=${THREADS:-2}
OUT=$(realpath -m "${OUT:-runs/peer-probe/$NAME}")
mkdir -p "$OUT"
cfg="$OUT/ours.toml"
bash scripts/peer_fashion_config.sh "$cfg.base" "$THREADS" "$STEPS"
sed -e "s/^name = .*/name = \"$NAME\"/" -e "s/^total_steps = .*/total_steps = $STEPS/" "$cfg.base" > "$cfg.tmp"
rm "$cfg.base"
# SECTION.KEY = VALUE: replace KEY's line in [SECTION], or add it there; KEY = VALUE: replace the
# line that sets KEY anywhere (it must exist: a misspelt key is an error, not a silent no-op).
python3 - "$cfg.tmp" "$cfg" "$@" <<'PY' || { rm -f "$cfg.tmp"; exit 1; }
import re, sys
path, shown, changes = sys.argv[1], sys.argv[2], sys.argv[3:]
lines = open(path).read().splitlines()
for kv in changes:
    key, _, value = (p.strip() for p in kv.partition("="))
    section, _, key = key.rpartition(".")
    line = f"{key} = {value}"
    head = next((i for i, l in enumerate(lines) if l.strip() == f"[{section}]"), None) if section else None
    if section and head is None:
        sys.exit(f"{shown}: no [{section}] section (for '{kv}')")
    lo = head + 1 if section else 0
    hi = next((i for i in range(lo, len(lines)) if lines[i].startswith("[")), len(lines)) if section else len(lines)
    hit = [i for i in range(lo, hi) if re.match(rf"{re.escape(key)}\s*=", lines[i])]
    if hit:
        lines[hit[0]] = line
    elif section:
        lines.insert(hi, line)
    else:
        sys.exit(f"{shown}: no line sets '{key}' (expected one of its keys, or SECTION.{key} to add it)")
open(path, "w").write("\n".join(lines) + "\n")
PY
mv "$cfg.tmp" "$cfg"
[ "${CONFIG_ONLY:-0}" = 1 ] && { cat "$cfg"; exit 0; }
cargo build --release -q -p ddpm-train -p ddpm-eval
ckpt="$OUT/runs/$NAME/checkpoints/ckpt-$(printf %09d "$STEPS").safetensors"
if [ ! -s "$ckpt" ]; then
  start=$(date +%s)
  target/release/ddpm-train train --config "$cfg" --runs-dir "$OUT/runs" > "$OUT/train.log" 2>&1
  echo "$(( $(date +%s) - start ))" > "$OUT/train-seconds"
fi
for seed in 0 1 2; do
  f="$OUT/step$STEPS-seed$seed.json"
  [ -s "$f" ] || target/release/ddpm-eval fid --runs-dir "$OUT/runs" --checkpoint "$ckpt" --sampler ddim --steps 50 \
    --seed "$seed" -n "$N" --out "$OUT/fid/step$STEPS-seed$seed" --json > "$f"
done
python3 - "$OUT" "$STEPS" <<'EOF'
import json, pathlib, statistics as st, sys
out, steps = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rows = [json.loads((out / f"step{steps}-seed{s}.json").read_text().splitlines()[-1]) for s in range(3)]
ratio = [r["fashion_fd"] / r["fashion_fd_floor"] for r in rows]
kid = [r["fashion_kid"] for r in rows]
summary = {"config": str(out / "ours.toml"), "step": steps, "fd": [r["fashion_fd"] for r in rows],
           "fd_floor": rows[0]["fashion_fd_floor"], "fd_ratio_mean": st.mean(ratio), "fd_ratio_std": st.stdev(ratio),
           "kid_mean": st.mean(kid), "kid_std": st.stdev(kid),
           "train_seconds": int((out / "train-seconds").read_text()) if (out / "train-seconds").exists() else None}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
EOF
