#!/usr/bin/env bash
# The committed equal-cost comparison (results/pattern_families/): the embedded model, training-free,
# on passkey and niah_multikey at 2k-8k tokens, 40 problems per cell, under
#   PowerAttention (block 16, 64, 256; window 1, sink 1: three cost levels), and at each level's cost
#   at 4,096 tokens (ppa-eval pattern --match-cost): PPA (w = 64), the same PPA with a 4-token sink,
#   a sliding window, and a sliding window with a 4-token sink; plus full attention as the ceiling.
# Every run uses the exact SDPA mask (--attn-kernel sdpa), so the families differ only in pattern.
# Resumable: run it again after an interruption.
#   bash bench/equal_cost_sweep.sh OUT [extra ppa-eval flags, e.g. --device cuda]
set -euo pipefail
out=${1:?usage: bench/equal_cost_sweep.sh OUT [flags]}
shift
reference_length=4096

matched() {  # the spec of family $1 (free parameter left out) at the cost of $2 at the reference length
    python3 -m ppa_eval.cli pattern --attention "$1" --match-cost "$2" --length $reference_length --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["spec"])'
}

specs=(--attention full)
for block in 16 64 256; do
    anchor="powerattention:block=$block,window=1,sink=1"
    ppa=$(matched ppa:w=64 "$anchor")
    specs+=(--attention "$anchor" --attention "$ppa" --attention "$ppa,sink=4"
            --attention "$(matched window "$anchor")" --attention "$(matched window:sink=4 "$anchor")")
done
printf '%s\n' "${specs[@]}" | grep -v -- --attention
python3 -m ppa_eval.cli sweep "${specs[@]}" --tasks passkey,niah_multikey --context-lengths 2048,4096,8192 \
    --limit 40 --batch-size 40 --attn-kernel sdpa --out "$out" "$@"
