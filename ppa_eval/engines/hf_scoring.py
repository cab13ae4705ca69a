"""Scoring with the transformers engine: the log-probability of every token of a sequence given the
tokens before it, in one forward pass under the model's attention pattern.

It is what lm-eval's log-likelihood and perplexity requests need (ppa_eval/lm_eval_model.py).
Rows of different lengths are left-padded, as the engine pads for generation, so the GPU kernels
(which take left padding only) score them too. The pattern's mask builder (hf_attention.py) counts
sinks and blocks from each row's first real token; position ids are counted from there as well,
as generate() counts them, so a padded row scores what it scores alone.
"""

from __future__ import annotations

import torch


@torch.inference_mode()
def token_logprobs(model, rows: list[list[int]], pad_token_id: int) -> list[tuple[list[float], list[bool]]]:
    """For each row of token ids: the log-probability of each token after the first given those before
    it, and whether that token is the model's greedy choice there."""
    width = max(len(row) for row in rows) - 1  # the last token of a row is scored, never read
    device = model.device
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    real = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        if len(row) > 1:
            ids[index, width - len(row) + 1:] = torch.tensor(row[:-1])
            real[index, width - len(row) + 1:] = 1
    ids, real = ids.to(device), real.to(device)
    logits = model(input_ids=ids, attention_mask=real, position_ids=(real.cumsum(-1) - 1).clamp(min=0)).logits
    scores = []
    for index, row in enumerate(rows):
        scored = len(row) - 1
        row_logprobs = torch.log_softmax(logits[index, width - scored:].float(), dim=-1)  # [scored, vocab]
        targets = torch.tensor(row[1:], device=device)
        picked = row_logprobs.gather(-1, targets[:, None])[:, 0]
        scores.append((picked.tolist(), (row_logprobs.argmax(-1) == targets).tolist()))
    return scores
