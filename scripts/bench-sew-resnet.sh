#!/usr/bin/env bash
# Times a training step (batch 32: forward, backward, Adam) of
# examples/sew_resnet.ron in snnc and the same network in Norse + torch
# (scripts/norse_sew_resnet.py), one after the other on this machine, with
# and without BatchNorm (tdBN, as the example, or per step) and learnable
# time constants.
#
#   scripts/bench-sew-resnet.sh PYTHON     # PYTHON: a python with norse 1.1.0 and torch
#   (scripts/norse/setup-norse.sh makes one and prints its path)
#
# snnc's step time is its training time over 1024 images (32 steps) of
# `snnc train --limit 1024 --batch 32` divided by 32; Norse's the median
# of 30 steps. Needs dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:?usage: scripts/bench-sew-resnet.sh PYTHON}"
cargo build --release --quiet
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
net=examples/sew_resnet.ron
grep -v BatchNorm2d "$net" > "$dir/nobn.ron"
sed 's/, trainable: \[tau_mem_inv\]//' "$net" > "$dir/fixed.ron"
sed 's/, trainable: \[tau_mem_inv\]//' "$dir/nobn.ron" > "$dir/plain.ron"
sed 's/, variant: time_batched//' "$net" > "$dir/perstep.ron"
snnc_ms() {
    target/release/snnc train "$1" --batch 32 --limit 1024 --test-limit 32 --epochs 1 --quiet --force \
        --out "$dir/out" > /dev/null
    awk -F, 'NR == 2 { printf "%.1f", $5 * 1000 / 32 }' "$dir/out/metrics.csv"
}
norse_ms() {
    THP_MEM_ALLOC_ENABLE=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \
        "$PY" scripts/norse_sew_resnet.py --time-steps 30 "$@" | sed -E 's/.*median ([0-9.]+) ms.*/\1/'
}
printf '| variant | snnc ms/step | Norse ms/step | Norse / snnc |\n|---|---|---|---|\n'
for v in "tdBN + learnable tau:$net:--tdbn" "tdBN, fixed tau:$dir/fixed.ron:--tdbn --no-learnable" \
         "per-step BatchNorm + learnable tau:$dir/perstep.ron:" \
         "no BatchNorm, learnable tau:$dir/nobn.ron:--no-bn" "neither:$dir/plain.ron:--no-bn --no-learnable"; do
    IFS=: read -r name file flags <<< "$v"
    s=$(snnc_ms "$file")
    # shellcheck disable=SC2086
    n=$(norse_ms $flags)
    printf '| %s | %s | %s | %s |\n' "$name" "$s" "$n" "$(awk -v a="$n" -v b="$s" 'BEGIN { printf "%.2f", a / b }')"
done
