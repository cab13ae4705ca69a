#!/usr/bin/env bash
# The committed fine-tuned sweep (results/finetuned/): the embedded model fine-tuned once per p (the
# paper's nine and 15/16, w = 64) with `ppa-eval finetune`'s default recipe, then the main job on
# that directory: passkey and niah_multikey at 1k-8k tokens, 40 problems per cell (Triton kernels);
# the same again through the exact SDPA mask, for the kernels' verdict agreement; MATH500 and GSM8K,
# first 100 problems. Resumable: run it again after an interruption.
#   bash bench/finetuned_sweep.sh OUT [extra ppa-eval flags, e.g. --device cuda]
set -euo pipefail
out=${1:?usage: bench/finetuned_sweep.sh OUT [flags]}
shift
python3 -m ppa_eval.cli finetune --powers 0:1:1/8,15/16 --out "$out/checkpoints" "$@"
python3 -m ppa_eval.cli sweep "$out/checkpoints" --tasks passkey,niah_multikey --context-lengths 1024,2048,4096,8192 \
    --limit 40 --batch-size 40 --out "$out/sweep" "$@"
python3 -m ppa_eval.cli sweep "$out/checkpoints" --tasks passkey,niah_multikey --context-lengths 1024,2048,4096,8192 \
    --limit 40 --batch-size 40 --attn-kernel sdpa --out "$out/sweep_sdpa" "$@"
python3 -m ppa_eval.cli sweep "$out/checkpoints" --tasks math500,gsm8k --limit 100 --batch-size 100 --out "$out/math" "$@"
