#!/usr/bin/env bash
# Our side of the Fashion-MNIST equal-budget comparison (scripts/peer_fashion_budget.sh and
# scripts/peer_fashion_probe.sh): configs/fashion-mnist.toml with the class conditioning off,
# saving every SAVE steps and keeping them all, with no previews or evaluations inside the
# budget (the peer's Trainer does none either), on THREADS threads.
#
#   bash scripts/peer_fashion_config.sh OUT.toml THREADS SAVE
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: peer_fashion_config.sh OUT.toml THREADS SAVE}
threads=${2:?threads}
save=${3:?save every}
sed -e '/^num_classes/d' -e '/^class_dropout/d' -e 's/^name = .*/name = "ours"/' \
  -e 's/^total_steps = .*/total_steps = 1000000/' -e "s/^checkpoint_every = .*/checkpoint_every = $save/" \
  -e 's/^sample_every = .*/sample_every = 1000000/' -e 's/^eval_every = .*/eval_every = 0/' \
  configs/fashion-mnist.toml > "$out.tmp"
printf 'keep_checkpoints = 100000\nthreads = %s\ncheckpoint_minutes = 100000.0\n' "$threads" >> "$out.tmp"
mv "$out.tmp" "$out"
