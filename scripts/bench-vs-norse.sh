#!/usr/bin/env bash
# Times Norse 1.1.0 and snnc on the benchmark configs A, B (LIF and
# Izhikevich), C of docs/DESIGN.md, forward and training step (forward + backward; Adam
# for the tutorial, as Norse's A train step), on this machine in one go, and
# prints the ratio table (markdown) that BENCHMARKS.md records.
#
#   scripts/bench-vs-norse.sh [OUT_DIR]
#
# Environment:
#   PY            Norse's python (default: /root/.cache/snnc/norse-venv/bin/python,
#                 else what scripts/norse/setup-norse.sh prints)
#   TARGET        snnc's target: cpu (default) or interp
#   NORSE_FILTER  regex of norse_cpu.py config keys to time (default: the fourteen
#                 Norse configs that match snnc's, forward and fwd+bwd)
#   MODE          snnc bench --mode: fwd, fwdbwd or both (default)
#   SNNC_NAMES    snnc configs to run (default: all eight; S, the STDP layer
#                 of issue 18, is forward only, and Norse's side prints the
#                 fraction of weight updates an event-driven update could skip)
#   RUNS, WARMUP  timed and untimed runs on both sides (default 5 and 2)
#   SKIP_NORSE=1  reuse OUT_DIR/norse.json from an earlier run
#   QUIET_WAIT    seconds snnc waits at most for a quiet machine (default 120)
#
# Norse runs with the tuned allocator env of scripts/norse/results-cpu.md
# and with norse_cpu.py's own quiet-machine checks (it waits for other
# processes to use < 0.15 cores and re-times disturbed configs). snnc waits
# for the same before it starts. A Norse config missing from norse.json
# (filtered out) is compared with its best median in results-cpu.md, marked
# "(baseline)".
set -euo pipefail
cd "$(dirname "$0")/.."

NORSE_DIR=scripts/norse # the Norse side: setup-norse.sh, norse_cpu.py
OUT="${1:-target/bench-vs-norse}"
TARGET="${TARGET:-cpu}"
RUNS="${RUNS:-5}"
WARMUP="${WARMUP:-2}"
NORSE_FILTER="${NORSE_FILTER:-^(A_norse_forward_full|B_norse_LIF_n512_forward|B_norse_LIF_n4096_forward|C_norse_convnet_forward|A_norse_train_step\(fwd\+bwd\+Adam, full\)|B_norse_LIF_n512_fwd\+bwd|B_norse_LIF_n4096_fwd\+bwd|C_norse_convnet_fwd\+bwd|B_norse_Izhikevich_n512_forward|B_norse_Izhikevich_n4096_forward|B_norse_Izhikevich_n512_fwd\+bwd|B_norse_Izhikevich_n4096_fwd\+bwd|S_norse_STDP_784x400_b1_forward|S_norse_STDP_784x400_b16_forward)}"
MODE="${MODE:-both}"
read -r -a NAMES <<<"${SNNC_NAMES:-}"
mkdir -p "$OUT"

if [ -z "${PY:-}" ]; then
    if [ -x /root/.cache/snnc/norse-venv/bin/python ]; then
        PY=/root/.cache/snnc/norse-venv/bin/python
    else
        PY="$("$NORSE_DIR/setup-norse.sh")"
    fi
fi

# Other processes' CPU use over one second, in cores (from /proc/stat,
# less this shell's own, which is ~0 while it sleeps).
foreign_cores() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
    awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz}'
}

wait_quiet() {
    local start=$SECONDS load
    while :; do
        load=$(foreign_cores)
        if awk -v l="$load" 'BEGIN{exit !(l < 0.15)}'; then
            echo "machine quiet (other processes: $load cores)" >&2
            return
        fi
        if [ $((SECONDS - start)) -ge "${QUIET_WAIT:-120}" ]; then
            echo "warning: the machine is not quiet after ${QUIET_WAIT:-120} s (other processes: $load cores); timing anyway" >&2
            return
        fi
    done
}

echo "== building snnc (release)" >&2
cargo build --release --quiet

if [ "${SKIP_NORSE:-0}" != 1 ]; then
    rm -f "$OUT/norse.json" # norse_cpu.py merges into an existing file
    echo "== Norse: $PY $NORSE_DIR/norse_cpu.py --only A,B,C,S --filter '$NORSE_FILTER'" >&2
    THP_MEM_ALLOC_ENABLE=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \
        "$PY" "$NORSE_DIR/norse_cpu.py" --only A,B,C,S --filter "$NORSE_FILTER" \
        --reps "$RUNS" --warmup "$WARMUP" --attempts 3 --max-wait 120 --out "$OUT/norse.json" >&2
fi

echo "== snnc: target/release/snnc bench ${NAMES[*]:-} --target $TARGET --mode $MODE --json --runs $RUNS --warmup $WARMUP" >&2
wait_quiet
target/release/snnc bench "${NAMES[@]}" --target "$TARGET" --mode "$MODE" --json --runs "$RUNS" --warmup "$WARMUP" \
    >"$OUT/snnc.jsonl"

python3 - "$OUT/norse.json" "$OUT/snnc.jsonl" <<'EOF'
import json, os, sys

norse_path, snnc_path = sys.argv[1], sys.argv[2]
norse = {}
if os.path.exists(norse_path):
    with open(norse_path) as f:
        norse = json.load(f).get("results", {})
runs = [json.loads(l) for l in open(snnc_path) if l.strip()]
keys = {
    ("tutorial", "fwd"): "A_norse_forward_full(encoder+net)",
    ("lif-layer-512", "fwd"): "B_norse_LIF_n512_forward",
    ("lif-layer-4096", "fwd"): "B_norse_LIF_n4096_forward",
    ("convnet", "fwd"): "C_norse_convnet_forward(encoder+net)",
    ("tutorial", "fwdbwd"): "A_norse_train_step(fwd+bwd+Adam, full)",
    ("lif-layer-512", "fwdbwd"): "B_norse_LIF_n512_fwd+bwd",
    ("lif-layer-4096", "fwdbwd"): "B_norse_LIF_n4096_fwd+bwd",
    ("convnet", "fwdbwd"): "C_norse_convnet_fwd+bwd(encoder+net)",
    ("izh-layer-512", "fwd"): "B_norse_Izhikevich_n512_forward",
    ("izh-layer-4096", "fwd"): "B_norse_Izhikevich_n4096_forward",
    ("izh-layer-512", "fwdbwd"): "B_norse_Izhikevich_n512_fwd+bwd",
    ("izh-layer-4096", "fwdbwd"): "B_norse_Izhikevich_n4096_fwd+bwd",
    ("stdp-784x400-b1", "fwd"): "S_norse_STDP_784x400_b1_forward",
    ("stdp-784x400-b16", "fwd"): "S_norse_STDP_784x400_b16_forward",
}
print("| config | mode | Norse median | snnc median | speedup (Norse/snnc) | snnc neuron-upd/s | snnc GFLOP/s | Norse GFLOP/s | snnc % peak | snnc % bw | compile ms | input density |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    mode = r.get("mode", "fwd")
    key = keys.get((r["name"], mode))
    n = norse.get(key)
    if n is not None:
        norse_s, src = n["median_s"], ""
        foreign = n.get("foreign_cpu_cores_during_timing")
        if foreign is not None and foreign > 0.1:
            src = f" (load {foreign:.2f})"
    else:
        norse_s, src = r["norse_best_s"], " (baseline)"
    gflop = r["gflops"] * r["median_s"]  # GFLOP of one run (fwd+bwd counts 3x the forward's products)
    dens = r.get("input_density")
    print(f"| {r['name']} | {mode} | {norse_s*1e3:.1f} ms{src} | {r['median_s']*1e3:.1f} ms | {norse_s/r['median_s']:.2f}x "
          f"| {r['neuron_updates_per_s']:.3g} | {r['gflops']:.2f} | {gflop/norse_s:.2f} "
          f"| {100*r['peak_fraction']:.1f} % | {100*r['bandwidth_fraction']:.1f} % | {r['compile_ms']:.1f} "
          f"| {'-' if dens is None else f'{dens:.3f}'} |")
m = runs[0] if runs else {}
for key, n in norse.items():
    if "event_driven_skippable" in n:
        print(f"\n{key}: an event-driven STDP update could skip {100*n['event_driven_skippable']:.2f} % of the "
              f"weight entries' updates (steps x (post rows without a spike) x (pre columns without a spike), "
              f"any sample); spikes per neuron and step: pre {n['pre_rate_per_step']:.4f}, post {n['post_rate_per_step']:.4f}")
print()
print(f"snnc target: {runs[0]['target'] if runs else '?'}; machine peak {m.get('machine_peak_gflops', 0):.1f} GFLOP/s "
      f"(sgemm), bandwidth {m.get('machine_bandwidth_gbs', 0):.1f} GB/s")
EOF
