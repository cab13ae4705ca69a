#!/usr/bin/env bash
# The committed training-free perplexity result (results/perplexity/): the embedded model under the
# paper's nine p and 15/16 (w = 64) on the perplexity task at 1k-8k tokens (29 books, one 8k-token
# document each), and the pass key as multiple choice through lm-eval with the `ppa` model
# (bench/choice_sweep.py) at the same p. Resumable: run it again after an interruption.
#   bash bench/perplexity_sweep.sh OUT [extra ppa-eval flags, e.g. --device cuda]
set -euo pipefail
out=${1:?usage: bench/perplexity_sweep.sh OUT [flags]}
shift
python3 -m ppa_eval.cli sweep --powers 0:1:1/8,15/16 --tasks perplexity --context-lengths 1024,2048,4096,8192 --limit 29 \
    --out "$out/runs" "$@"
python3 bench/choice_sweep.py "$out/choice" --per-length 8 "$@"
