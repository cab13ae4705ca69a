"""The "ppa_flex" transformers attention (flex attention with the pattern's block mask), called as a
layer calls it, against the float64 dense masked reference: with a query-head count that is not a
power of two (transformers would repeat the key/value heads), on CPU, and on a GPU at 131k tokens,
where the repeated heads made torch inductor's kernel fail to compile."""

from types import SimpleNamespace

import pytest
import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, causal_mask_function

from ppa_eval.engines import hf_attention
from ppa_eval.kernels.reference import attended_distances, masked_attention, relative_error
from ppa_eval.patterns import PowerPattern

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU at 131k tokens")


def flex_layer_call(q, k, v, pattern: PowerPattern):
    """ppa_flex's mask built and its attention run as a decoder layer does: q [B, Hq, Lq, D], the
    queries the last Lq of the cache k, v [B, Hkv, Lk, D]; returns [B, Hq, Lq, D]."""
    n_queries, kv_len = q.shape[2], k.shape[2]
    config = SimpleNamespace(ppa_power=str(pattern.power), ppa_window=pattern.window)
    mask = ALL_MASK_ATTENTION_FUNCTIONS["ppa_flex"](
        batch_size=q.shape[0], q_length=n_queries, kv_length=kv_len, q_offset=kv_len - n_queries, kv_offset=0,
        mask_function=causal_mask_function, attention_mask=None, config=config, device=q.device)
    module = torch.nn.Module().eval()
    module.num_key_value_groups = q.shape[1] // k.shape[1]
    return hf_attention.grouped_flex_attention(module, q, k, v, mask, scaling=q.shape[3] ** -0.5)[0].transpose(1, 2)


def reference(q, k, v, pattern):
    attended = attended_distances(pattern.power, pattern.window, k.shape[2])
    return masked_attention(q, k, v, attended, scale=q.shape[3] ** -0.5)


@pytest.mark.slow
@pytest.mark.parametrize("n_queries", [100, 1])  # prefill, then a decode step
def test_flex_keeps_a_group_of_five_heads_grouped_and_exact(n_queries):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 10, n_queries, 16, generator=gen)
    k, v = (torch.randn(2, 2, 100, 16, generator=gen) for _ in range(2))
    pattern = PowerPattern("1/2", 4)
    assert relative_error(flex_layer_call(q, k, v, pattern), reference(q, k, v, pattern)) < 1e-5


@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("batch, n_queries", [(8, 1), (1, 131072)])  # decode at batch 8, a whole prefill
def test_flex_runs_at_131k_tokens_on_a_gpu(batch, n_queries):
    """Nano-9B-v2's attention shape (40 query / 8 KV heads, head 128) at L = 131,072, p = 1/2. The
    prefill is compared on its last 64 queries (the float64 reference of all of them is too slow)."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    kv_len = 131072

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device="cuda", dtype=torch.bfloat16)
    q, k, v = randn(batch, 40, n_queries, 128), randn(batch, 8, kv_len, 128), randn(batch, 8, kv_len, 128)
    pattern = PowerPattern("1/2", 64)
    out = flex_layer_call(q, k, v, pattern)[:, :, -64:]
    assert not out.isnan().any()
    assert relative_error(out, reference(q[:, :, -64:], k, v, pattern)) < 1e-2
