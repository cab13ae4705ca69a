"""The PPA Triton kernels against a float64 dense masked reference built from the definition.

On a machine without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set in
conftest.py before triton is imported), on small shapes: GQA with a non-power-of-two group (10 query heads on
2 KV heads), odd lengths that are no multiple of any tile, left padding, chunked prefill, contiguous
and paged caches, sinks (inside the window, at power distances, longer than the sequence). The interpreter multiplies bfloat16 operands as raw integers, so these run in
float16; the bfloat16 checks at the model's shape run on the GPU (bench/attention.py).
"""


import itertools

import pytest
import torch

from ppa_eval.kernels import (KernelInputError, plan_prefill_paged, ppa_attention, ppa_attention_paged,
                              ppa_prefill_paged, runs_pattern)
from ppa_eval.kernels import decode, prefill
from ppa_eval.kernels.chunks import program_table
from ppa_eval.kernels.reference import attended_distances, masked_attention, relative_error
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.kernels.tiles import masked_tiles
from ppa_eval.patterns import PowerAttention, PowerPattern

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float16
TOLERANCE = 1e-2
HEADS, KV_HEADS, HEAD_DIM = 10, 2, 32


def random_qkv(batch, n_queries, kv_len, seed):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, HEADS, n_queries, HEAD_DIM, generator=gen)
    k = torch.randn(batch, KV_HEADS, kv_len, HEAD_DIM, generator=gen)
    v = torch.randn(batch, KV_HEADS, kv_len, HEAD_DIM, generator=gen)
    return (x.to(DEVICE, DTYPE) for x in (q, k, v))


def reference(q, k, v, pattern, kv_start=None, scale=HEAD_DIM**-0.5):
    attended = attended_distances(pattern.power, pattern.window, k.shape[2])
    return masked_attention(q, k, v, attended, kv_start=kv_start, sink=pattern.sink, scale=scale)


def poisoned_like(q):
    return torch.full_like(q, float("nan"))


def assert_close(out, ref):
    assert not out.isnan().any(), "some outputs were never written"
    assert relative_error(out, ref) <= TOLERANCE


@pytest.mark.parametrize(
    "power, window, n_queries, kv_len",
    [
        ("3/4", 8, 1, 77),      # one decode query
        ("1/2", 5, 3, 200),     # a few queries at once
        ("7/8", 1, 1, 131),
        ("1/3", 0, 2, 150),     # no window: power positions only
        ("1", 0, 1, 45),        # p = 1 is full causal attention
    ],
)
def test_decode_matches_reference(power, window, n_queries, kv_len):
    q, k, v = random_qkv(2, n_queries, kv_len, seed=kv_len)
    kv_start = torch.tensor([0, 7], dtype=torch.int32, device=DEVICE)  # row 1 is left-padded
    out = ppa_attention(q, k, v, PowerPattern(power, window), kv_start=kv_start, out=poisoned_like(q))
    assert_close(out, reference(q, k, v, PowerPattern(power, window), kv_start))


@pytest.mark.parametrize("sink, unsplit_blocks", [(0, 4), (20, 4), (20, 64)])
def test_decode_merges_many_splits(sink, unsplit_blocks):
    # Small steps and a high program target cut the distance list into several splits, some
    # empty for the left-padded row; the merge must weight each split by its own maximum
    # (split 0 also holds the sinks), and merges in whichever program of a row finishes last.
    # unsplit_blocks = 64 walks the same list in one program per row.
    q, k, v = random_qkv(2, 1, 301, seed=3)
    kv_start = torch.tensor([0, 250], dtype=torch.int32, device=DEVICE)
    pattern = PowerPattern("7/8", 16, sink)
    out = decode.decode(q, k, v, poisoned_like(q), offset_tables(pattern, 301, DEVICE), HEAD_DIM**-0.5,
                        max_reach=300, kv_len=301, kv_start=kv_start,
                        tiles=decode.Tiles(block_n=16, programs_per_sm=32, unsplit_blocks=unsplit_blocks))
    assert_close(out, reference(q, k, v, pattern, kv_start))
    # The last split of each row zeroed its arrival counter: the next launch finds them all zero.
    assert all(not buffer.any() for buffers in decode._arrivals.values() for buffer in buffers)


@pytest.mark.parametrize("pattern, unsplit_blocks", [(PowerPattern("3/4", 8), 64), (PowerPattern("7/8", 16, 20), 4)])
def test_decode_reads_row_lengths_from_the_device(pattern, unsplit_blocks):
    # A static cache: rows hold 77 and 240 of 301 slots, left padding in row 0; the slots past a
    # row's length hold NaN, which no output may touch. The walk is sized (and split) for 301 slots.
    lengths, kv_start = [77, 240], torch.tensor([5, 0], dtype=torch.int32, device=DEVICE)
    q, k, v = random_qkv(2, 2, 301, seed=13)
    for b, length in enumerate(lengths):
        k[b, :, length:], v[b, :, length:] = float("nan"), float("nan")
    seq_lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    out = decode.decode(q, k, v, poisoned_like(q), offset_tables(pattern, 301, DEVICE), HEAD_DIM**-0.5,
                        max_reach=300, kv_len=301, kv_start=kv_start, seq_lens=seq_lens,
                        tiles=decode.Tiles(block_n=16, programs_per_sm=32, unsplit_blocks=unsplit_blocks))
    for b, length in enumerate(lengths):
        ref = reference(q[b:b + 1], k[b:b + 1, :, :length], v[b:b + 1, :, :length], pattern, kv_start[b:b + 1])
        assert_close(out[b:b + 1], ref)


@pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs need a GPU")
def test_split_decode_replays_in_a_cuda_graph():
    """A split walk captured in a CUDA graph, its arrival counters allocated during the capture (on the
    capture's stream), then replayed on new inputs: every replay merges every row and leaves the counters zero."""
    q, k, v = random_qkv(2, 1, 301, seed=5)
    pattern = PowerPattern("7/8", 16)
    tables = offset_tables(pattern, 301, DEVICE)
    out = poisoned_like(q)

    def step():
        decode.decode(q, k, v, out, tables, HEAD_DIM**-0.5, max_reach=300, kv_len=301,
                      tiles=decode.Tiles(block_n=16, programs_per_sm=32))
    step()  # compile outside the capture
    decode._arrivals.clear()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for seed in (6, 7):
        for x, fresh in zip((q, k, v), random_qkv(2, 1, 301, seed=seed)):
            x.copy_(fresh)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert_close(out, reference(q, k, v, pattern))
        assert all(not buffer.any() for buffers in decode._arrivals.values() for buffer in buffers)


def paged_cache(k, v, lengths, page=16):
    """vLLM's layout of k, v [B, Hkv, L, D]: row b's first lengths[b] slots scattered over shuffled
    physical blocks of `page` slots, every slot no row owns NaN, block 0 included (vLLM's null
    block, which no request owns). Returns (k_cache, v_cache, block_table)."""
    batch = k.shape[0]
    pages_per_row = -(-max(lengths) // page)
    physical = 1 + torch.randperm(batch * pages_per_row, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    block_table = physical.view(batch, pages_per_row).to(torch.int32)
    k_cache = torch.full((1 + batch * pages_per_row, page, KV_HEADS, HEAD_DIM), float("nan"), dtype=DTYPE, device=DEVICE)
    v_cache = k_cache.clone()
    for b, length in enumerate(lengths):
        for logical in range(-(-length // page)):
            rows = slice(logical * page, min((logical + 1) * page, length))  # the last page may be partly filled
            filled = rows.stop - rows.start
            k_cache[block_table[b, logical], :filled] = k[b, :, rows].transpose(0, 1)
            v_cache[block_table[b, logical], :filled] = v[b, :, rows].transpose(0, 1)
    return k_cache, v_cache, block_table


@pytest.mark.parametrize("pattern", [PowerPattern("3/4", 8), PowerPattern("3/4", 8, 20)])
def test_paged_decode_matches_reference(pattern):
    lengths = [77, 150]
    q, k, v = random_qkv(2, 2, max(lengths), seed=11)
    k_cache, v_cache, block_table = paged_cache(k, v, lengths)
    seq_lens = torch.tensor(lengths, dtype=torch.int32, device=DEVICE)
    out = ppa_attention_paged(q, k_cache, v_cache, block_table, seq_lens, pattern,
                              max_seq_len=max(lengths), out=poisoned_like(q))
    for b, length in enumerate(lengths):  # row b holds `length` slots; its queries are the last ones
        ref = reference(q[b:b + 1], k[b:b + 1, :, :length], v[b:b + 1, :, :length], pattern)
        assert_close(out[b:b + 1], ref)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", [PowerPattern("3/4", 8), PowerPattern("1/2", 4, 6), PowerPattern("7/8", 16)])
def test_a_steps_prefill_chunks_match_reference_in_one_launch(pattern):
    # A vLLM step: two one-token decodes first, then a whole prompt, a later chunk of a longer one,
    # a request with no queries this step, a short chunk, and a decode behind them (a batch vLLM
    # did not reorder). One launch of each kernel serves every request, a decode as a chunk of one
    # query, its keys and values read straight from shuffled pages (the other rows and slots of the
    # cache are NaN), at every split and at the cost model's.
    lengths, n_queries = [50, 60, 61, 130, 20, 77, 45], [1, 1, 61, 40, 0, 5, 1]
    q, k, v = random_qkv(len(lengths), max(n_queries), max(lengths), seed=3)
    k_cache, v_cache, block_table = paged_cache(k, v, lengths)
    query_starts = [0, *itertools.accumulate(n_queries)]
    rows = torch.cat([q[r, :, :n].transpose(0, 1) for r, n in enumerate(n_queries)])  # [tokens, Hq, D]
    requests = range(len(lengths))
    tables = offset_tables(pattern, max(lengths), DEVICE)

    for split in (1, 40, max(lengths)):  # all gathered, both, all tiles
        chunks = prefill.plan_chunks(tables, query_starts, lengths, requests, HEADS, KV_HEADS, DEVICE, split=split,
                                     tiles=prefill.TileShape(block_m=16, block_n=32), gather=prefill.Gather(block_c=16))
        out = ppa_prefill_paged(rows, k_cache, v_cache, block_table, chunks, out=poisoned_like(rows))
        assert_chunks_close(out, q, k, v, query_starts, lengths, pattern)
    chunks = plan_prefill_paged(pattern, query_starts, lengths, requests, HEADS, KV_HEADS, DEVICE)
    out = ppa_prefill_paged(rows, k_cache, v_cache, block_table, chunks, out=poisoned_like(rows))
    assert_chunks_close(out, q, k, v, query_starts, lengths, pattern)


def assert_chunks_close(out, q, k, v, query_starts, lengths, pattern, scale=HEAD_DIM**-0.5):
    """Each request's rows of a step's output [tokens, Hq, D] against the reference of its queries
    (q [B, Hq, n, D], the first n_queries of each row) over its lengths[r] keys."""
    for r in range(len(lengths)):
        n = query_starts[r + 1] - query_starts[r]
        if n:
            chunk = out[query_starts[r]:query_starts[r + 1]].transpose(0, 1)[None]
            assert_close(chunk, reference(q[r:r + 1, :, :n], k[r:r + 1, :, :lengths[r]], v[r:r + 1, :, :lengths[r]],
                                          pattern, scale=scale))


@pytest.mark.slow
def test_a_steps_later_layers_replay_the_first_layers_launches():
    # The layers of a vLLM step share one plan. The first launches through Triton and keeps its
    # launches in the plan; the next, laid out alike, replays them with its own queries, cache and
    # output (a replay with the first layer's tensors would leave this output NaN); one with another
    # scale launches anew. The CPU interpreter compiles nothing to replay: there every layer launches.
    pattern = PowerPattern("1/2", 4, 2)
    lengths, n_queries = [50, 130, 77], [1, 40, 77]
    query_starts = [0, *itertools.accumulate(n_queries)]
    plan = plan_prefill_paged(pattern, query_starts, lengths, range(len(lengths)), HEADS, KV_HEADS, DEVICE)
    block_table = None
    for layer, scale in enumerate([HEAD_DIM**-0.5, HEAD_DIM**-0.5, 0.1]):
        q, k, v = random_qkv(len(lengths), max(n_queries), max(lengths), seed=20 + layer)
        k_cache, v_cache, pages = paged_cache(k, v, lengths)
        block_table = pages if block_table is None else block_table  # one step, one block table (the same pages)
        rows = torch.cat([q[r, :, :n].transpose(0, 1) for r, n in enumerate(n_queries)])
        out = ppa_prefill_paged(rows, k_cache, v_cache, block_table, plan, scale=scale, out=poisoned_like(rows))
        assert_chunks_close(out, q, k, v, query_starts, lengths, pattern, scale)
        assert len(plan.launches) == ([1, 1, 2][layer] if DEVICE == "cuda" else 0)  # layouts launched


def test_program_table_gives_each_program_its_chunk():
    # Hand-checked: blocks of 4 queries; request 0 lies outside the planned range, request 2 has none.
    table = program_table([0, 1, 7, 7, 10], [30, 12, 5, 40], range(1, 4), 4, "cpu")
    assert table.tolist() == [  # request, first query, first row, n_queries, first_slot
        [1, 0, 1, 6, 6], [1, 4, 1, 6, 6],
        [3, 0, 7, 3, 37],
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "power, window, n_queries, kv_len, splits, tiles",
    [
        # split 1: everything but distance 0 gathered; kv_len: all masked tiles; between: both
        ("3/4", 8, 67, 67, (1, 8, 33, 67), prefill.TileShape()),
        ("1/2", 4, 131, 131, (4, 16, 131), prefill.TileShape(block_m=16, block_n=32)),
        ("7/8", 16, 45, 61, (16, 40, 61), prefill.TileShape(block_m=16, block_n=64)),  # chunked: 16 cached slots
        ("1/3", 0, 37, 37, (1, 9, 37), prefill.TileShape(block_m=32, block_n=32)),
    ],
)
def test_prefill_matches_reference_at_every_split(power, window, n_queries, kv_len, splits, tiles):
    q, k, v = random_qkv(2, n_queries, kv_len, seed=n_queries)
    kv_start = torch.tensor([3, 0], dtype=torch.int32, device=DEVICE)
    pattern = PowerPattern(power, window)
    ref = reference(q, k, v, pattern, kv_start)
    for split in splits:
        out = prefill.prefill(q, k, v, poisoned_like(q), offset_tables(pattern, kv_len, DEVICE), HEAD_DIM**-0.5,
                              kv_start=kv_start, split=split, tiles=tiles, gather=prefill.Gather(block_c=16))
        assert_close(out, ref)


@pytest.mark.parametrize("pattern", [PowerPattern(1, 0), PowerPattern(1, 8, 3), PowerPattern("1/2", 70)])
def test_full_attention_prefill_takes_the_dense_kernel(pattern, monkeypatch):
    # p = 1, and a window as long as the sequence, attend every causal pair: torch's SDPA computes
    # them, the masked tiles are never launched.
    q, k, v = random_qkv(2, 70, 70, seed=70)
    monkeypatch.setattr(prefill, "masked_tiles", lambda *args, **kwargs: pytest.fail("the masked tiles ran"))
    assert_close(ppa_attention(q, k, v, pattern, out=poisoned_like(q)), reference(q, k, v, pattern))


@pytest.mark.parametrize("kv_start, n_queries", [([3, 0], 70), (None, 50)])  # left padding; chunked prefill
def test_full_attention_with_padding_or_a_cache_stays_on_the_tiles(kv_start, n_queries, monkeypatch):
    # is_causal SDPA aligns the diagonal top-left and knows no padding: these stay on the tiles.
    q, k, v = random_qkv(2, n_queries, 70, seed=71)
    kv_start = None if kv_start is None else torch.tensor(kv_start, dtype=torch.int32, device=DEVICE)
    launched = []
    monkeypatch.setattr(prefill, "masked_tiles", lambda *args, **kwargs: launched.append(masked_tiles(*args, **kwargs)))
    ppa_attention(q, k, v, PowerPattern(1, 0), kv_start=kv_start, out=(out := poisoned_like(q)))
    assert launched
    assert_close(out, reference(q, k, v, PowerPattern(1, 0), kv_start))


@pytest.mark.slow
@pytest.mark.parametrize("pattern", [PowerPattern("1/2", 4, 6), PowerPattern("7/8", 16, 9), PowerPattern(0, 0, 3)])
def test_prefill_sinks_at_every_split(pattern):
    # A sink below the split is a masked-tile key; beyond it, a tile key only if S does not reach
    # it there (the gather visits those): each must be counted exactly once at every split.
    q, k, v = random_qkv(2, 45, 61, seed=pattern.sink)
    kv_start = torch.tensor([0, 11], dtype=torch.int32, device=DEVICE)
    ref = reference(q, k, v, pattern, kv_start)
    for split in (1, 5, 20, 61):
        out = prefill.prefill(q, k, v, poisoned_like(q), offset_tables(pattern, 61, DEVICE), HEAD_DIM**-0.5,
                              kv_start=kv_start, split=split, tiles=prefill.TileShape(block_m=16, block_n=32))
        assert_close(out, ref)


@pytest.mark.parametrize(
    "pattern, n_queries, kv_len",
    [
        (PowerPattern("3/4", 8, 5), 1, 77),    # decode: sinks far behind the window
        (PowerPattern("1/2", 4, 12), 3, 60),   # decode: sinks 0, 1, 3, 8 sit at power distances
        (PowerPattern("1/3", 0, 70), 2, 60),   # decode: more sinks than slots
        (PowerPattern(0, 0, 3), 2, 20),        # decode: sinks alone (no window, no power)
        (PowerPattern("1/2", 4, 6), 45, 45),   # prefill: early queries see their sinks in the window
        (PowerPattern("7/8", 16, 9), 45, 61),  # chunked prefill: 16 cached slots first
        (PowerPattern("3/4", 0, 50), 37, 37),  # prefill: more sinks than slots
        (PowerPattern(0, 0, 3), 20, 20),       # prefill: sinks alone
    ],
)
def test_sinks_match_reference(pattern, n_queries, kv_len):
    # Row 1 is left-padded: its sinks are the 11 slots after the padding, not slots 0 .. sink-1.
    q, k, v = random_qkv(2, n_queries, kv_len, seed=kv_len + pattern.sink)
    kv_start = torch.tensor([0, 11], dtype=torch.int32, device=DEVICE)
    out = ppa_attention(q, k, v, pattern, kv_start=kv_start, out=poisoned_like(q))
    assert_close(out, reference(q, k, v, pattern, kv_start))


@pytest.mark.parametrize("n_queries", [1, 40])
def test_sinks_already_attended_count_once(n_queries):
    # Hand-checked: when every distance is attended (p = 1) or the window covers the sequence,
    # sinks add no key, so the result is exactly full causal attention; a sink counted twice
    # would double its softmax weight.
    q, k, v = random_qkv(2, n_queries, 40, seed=n_queries)
    kv_start = torch.tensor([0, 5], dtype=torch.int32, device=DEVICE)
    full = reference(q, k, v, PowerPattern(1, 0), kv_start)
    for pattern in (PowerPattern(1, 0, 7), PowerPattern(0, 64, 4)):
        assert_close(ppa_attention(q, k, v, pattern, kv_start=kv_start, out=poisoned_like(q)), full)


def test_left_padding_queries_come_out_zero():
    q, k, v = random_qkv(1, 40, 40, seed=5)
    kv_start = torch.tensor([9], dtype=torch.int32, device=DEVICE)
    out = ppa_attention(q, k, v, PowerPattern("3/4", 4), kv_start=kv_start, out=poisoned_like(q))
    assert torch.equal(out[:, :, :9], torch.zeros_like(out[:, :, :9]))
    assert_close(out, reference(q, k, v, PowerPattern("3/4", 4), kv_start))


def test_writes_into_a_transposed_output():
    # transformers wants [B, Lq, Hq, D]: the kernels write through any strided view.
    q, k, v = random_qkv(2, 9, 30, seed=8)
    out = torch.full((2, 9, HEADS, HEAD_DIM), float("nan"), dtype=DTYPE, device=DEVICE)
    ppa_attention(q, k, v, PowerPattern("1/2", 4), out=out.transpose(1, 2))
    assert_close(out.transpose(1, 2), reference(q, k, v, PowerPattern("1/2", 4)))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda q, k, v: (q.float(), k.float(), v.float()), "bfloat16 or float16"),
        (lambda q, k, v: (q[..., :24], k[..., :24], v[..., :24]), "power of two"),
        (lambda q, k, v: (q[:, :9], k, v), "not a multiple"),
        (lambda q, k, v: (q, k[:, :, :3], v[:, :, :3]), "queries but only"),
    ],
)
def test_refuses_inputs_it_cannot_take(change, message):
    q, k, v = change(*random_qkv(1, 5, 20, seed=0))
    with pytest.raises(KernelInputError, match=message):
        ppa_attention(q, k, v, PowerPattern("3/4", 4))


def test_refuses_device_lengths_for_a_prompt():
    q, k, v = random_qkv(1, 5, 20, seed=0)
    with pytest.raises(KernelInputError, match="seq_lens is for decode"):
        ppa_attention(q, k, v, PowerPattern("3/4", 4), seq_lens=torch.tensor([20], dtype=torch.int32, device=DEVICE))


def test_plans_no_prefill_for_requests_without_queries():
    # vLLM pads a batch of 62 decodes to its CUDA graph's 64 with empty requests (seen on the
    # H200): nothing to prefill, not an error.
    query_starts, seq_lens = list(range(63)) + [62, 62], [7700] * 62 + [0, 0]
    assert plan_prefill_paged(PowerPattern("1/2", 64), query_starts, seq_lens, range(62, 64), 9, 3, DEVICE) is None


def test_refuses_a_chunk_longer_than_its_sequence():
    with pytest.raises(KernelInputError, match="more queries than its sequence"):
        plan_prefill_paged(PowerPattern("1/2", 4), [0, 1, 41], [30, 20], range(1, 2), HEADS, KV_HEADS, DEVICE)


def test_refuses_a_pattern_that_attends_nothing():
    q, k, v = random_qkv(1, 1, 20, seed=0)
    with pytest.raises(KernelInputError, match="does not attend"):
        ppa_attention(q, k, v, PowerPattern(0, 0))


def test_runs_every_ppa_and_refuses_other_families():
    assert runs_pattern(PowerPattern("3/4", 64)) and runs_pattern(PowerPattern(0, 64, 4))
    assert not runs_pattern(PowerAttention(64, 1, 1))
    q, k, v = random_qkv(1, 1, 20, seed=0)
    with pytest.raises(KernelInputError, match="use flex attention"):
        ppa_attention(q, k, v, PowerAttention(4, 1, 1))
