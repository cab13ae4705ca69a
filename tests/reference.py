"""Independent references for the tests: the PPA definition evaluated directly, in exact integers
(floor_power is the kernels' brute-force reference; it shares nothing with ppa_eval.patterns)."""

from fractions import Fraction
from functools import cache

import numpy as np
import torch

from ppa_eval.kernels.reference import floor_power


def attends(p: Fraction, w: int, i: int, k: int) -> bool:
    """Does the query at position i attend the key at position k (1-based)?"""
    j = i - k + 1
    return j >= 1 and (j <= w or floor_power(j, p) - floor_power(j - 1, p) == 1)


@cache
def _family_and_params(spec: str) -> tuple[str, dict]:
    """The spec string read by hand (ints, and the power as a Fraction); cached: brute_matrix asks L^2 times."""
    family, _, rest = spec.partition(":")
    params = dict(item.split("=") for item in rest.split(",")) if rest else {}
    return family, {key: Fraction(value) if key == "p" else int(value) for key, value in params.items()}


def spec_attends(spec: str, i: int, k: int) -> bool:
    """Every family's definition (0-based query i, key k), read off the spec string by hand."""
    family, params = _family_and_params(spec)
    sink = params.get("sink", 0)
    if k > i:
        return False
    j = i - k + 1
    if family == "full":
        return True
    if family == "window":
        return j <= params["w"] or k < sink
    if family == "ppa":
        p = params["p"]
        return j <= params["w"] or floor_power(j, p) - floor_power(j - 1, p) == 1 or k < sink
    block, window = params["block"], params["window"]
    a, b = i // block, k // block
    d = a - b
    return d < window or (d > 0 and d & (d - 1) == 0) or b < sink


def brute_matrix(spec: str, length: int) -> np.ndarray:
    return np.array([[spec_attends(spec, i, k) for k in range(length)] for i in range(length)], dtype=bool)


def dense_mask(p: Fraction, w: int, attention_mask: torch.Tensor) -> torch.Tensor:
    """4D boolean mask [B, 1, L, L] for left-padded rows: the pattern on real tokens only."""
    batch, length = attention_mask.shape
    table = torch.tensor([[attends(p, w, i, k) for k in range(length)] for i in range(length)])
    real = attention_mask.bool()
    mask = table[None] & real[:, None, :] & real[:, :, None]
    # a fully masked padding row would give NaN; let padding queries see themselves
    mask |= torch.eye(length, dtype=torch.bool)[None] & ~real[:, :, None]
    return mask[:, None]


def left_padded_batch(vocab, lengths, seed=0):
    """Random token ids [B, max(lengths)] and their attention mask, each row left-padded with 0."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), width), generator=gen)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1
        ids[row, : width - n] = 0
    return ids, mask


def cached_and_full_logits(model, ids, mask, new_tokens: int):
    """Greedy generation's logits step by step (cached decode) and the logits a single full forward
    of the finished sequences gives at the same positions; with the generated token ids."""
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                             output_logits=True, return_dict_in_generate=True, pad_token_id=0)
        full_mask = torch.cat([mask, torch.ones(len(ids), new_tokens, dtype=torch.long)], dim=1)
        full = model(out.sequences, attention_mask=full_mask).logits
    # out.logits[t] predicts token prompt + t, as the full forward does at position prompt - 1 + t
    return torch.stack(out.logits, dim=1), full[:, ids.shape[1] - 1 : -1], out.sequences[:, ids.shape[1]:]


def brute_scores(model, row: list[int], spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each token of `row` after the first, and whether it is the argmax, from the
    stock model with the pattern's mask written out position by position."""
    length = len(row) - 1
    allowed = torch.from_numpy(brute_matrix(spec, length))
    mask = torch.zeros(length, length).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]
    with torch.no_grad():
        logprobs = model(input_ids=torch.tensor([row[:-1]]), attention_mask=mask).logits[0].float().log_softmax(-1)
    targets = torch.tensor(row[1:])
    return logprobs.gather(-1, targets[:, None])[:, 0], logprobs.argmax(-1) == targets
