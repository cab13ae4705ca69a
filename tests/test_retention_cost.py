"""Attention cost per model (patterns/cost.py): dense and PPA counted against the mask itself, one
(query, key) pair at a time; retention's formula against the figures it must reproduce."""

import pytest
import torch

from ppa_eval.patterns import mask_mod, parse_spec
from ppa_eval.patterns.cost import AttentionShape, cache_bytes, cached_tokens, decode_flops
from ppa_eval.patterns.retention import state_width

SHAPE = AttentionShape(layers=3, heads=4, kv_heads=2, head_dim=16, value_bytes=2)
SPECS = ["full", "ppa:p=1/2,w=8", "ppa:p=3/4,w=4,sink=2", "window:w=16", "window:w=8,sink=3",
         "powerattention:block=4,window=1,sink=1"]


def attends(spec: str, length: int) -> torch.Tensor:
    """The pattern's boolean [query, key] matrix over `length` positions, from its mask function."""
    positions = torch.arange(length)
    return mask_mod(parse_spec(spec), length)(torch.tensor(0), torch.tensor(0), positions[:, None], positions[None, :])


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("length", [1, 37, 100])
def test_decode_flops_count_the_last_querys_keys_in_the_mask(spec, length):
    keys = int(attends(spec, length)[-1].sum())
    assert decode_flops(parse_spec(spec), SHAPE, length) == 3 * 4 * 4 * 16 * keys


@pytest.mark.parametrize("spec", SPECS)
def test_the_cache_holds_the_tokens_some_later_query_attends(spec):
    length, horizon = 40, 400  # queries up to 10x further than the context: PPA's and PowerAttention's reach on
    needed = int(attends(spec, horizon)[length - 1:, :length].any(0).sum())
    assert cached_tokens(parse_spec(spec), length) == needed
    assert cache_bytes(parse_spec(spec), SHAPE, length) == 3 * 2 * 2 * 16 * 2 * needed


def test_state_width_is_the_retention_kernels():
    assert [state_width(d) for d in (32, 64, 128)] == [768, 2560, 9216]  # retention.md, from the package
    package = pytest.importorskip("retention._utils", reason="the retention extra is not installed")
    assert all(state_width(d) == package.compute_expanded_dim(d, 2) for d in (16, 32, 64, 128, 256))


def test_retention_costs_brumby_14b_a_constant_state_and_the_flops_of_dense_at_about_5k():
    brumby = AttentionShape(layers=40, heads=40, kv_heads=8, head_dim=128)
    state_path = parse_spec("retention:degree=2,chunk=64,prefill=1024,switch=8192")
    state = 40 * 8 * (9216 * 128 * 2 + 9216 * 4)  # 731 MiB of state and normaliser, then the 64-token tail
    assert cache_bytes(state_path, brumby, 1024) == cache_bytes(state_path, brumby, 100_000) \
        == state + 40 * 8 * 64 * (2 * 128 * 2 + 4)
    flops = decode_flops(state_path, brumby, 32_768)
    assert flops == 40 * (2 * 9216 * 129 * 48 + 4 * 64 * 128 * 40)
    dense = parse_spec("full")
    assert decode_flops(dense, brumby, 5_000) < flops < decode_flops(dense, brumby, 6_000)
    exact = parse_spec("retention")  # no chunk: the exact path costs dense's FLOPs, plus a gate per cached token
    assert decode_flops(exact, brumby, 4096) == decode_flops(dense, brumby, 4096)
    assert cache_bytes(exact, brumby, 4096) == cache_bytes(dense, brumby, 4096) + 40 * 8 * 4096 * 4
