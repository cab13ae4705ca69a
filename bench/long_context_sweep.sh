#!/usr/bin/env bash
# The committed long-context sweep (results/long_context/): the embedded model, training-free, under
# the paper's nine p and 15/16, on passkey and niah_multikey at 1k-8k tokens, 40 problems per cell;
# variable tracking at p = 1 only. Resumable: run it again after an interruption.
#   bash bench/long_context_sweep.sh OUT [extra ppa-eval flags, e.g. --device cuda]
set -euo pipefail
out=${1:?usage: bench/long_context_sweep.sh OUT [flags]}
shift
lengths=1024,2048,4096,8192
python3 -m ppa_eval.cli sweep --powers 0:1:1/8,15/16 --tasks passkey,niah_multikey --context-lengths $lengths \
    --limit 40 --batch-size 40 --out "$out/sweep" "$@"
python3 -m ppa_eval.cli evaluate --power 1 --tasks variable_tracking --context-lengths $lengths --limit 40 \
    --batch-size 40 --out "$out/variable_tracking" "$@"
