"""PPA prefill as masked dense tiles: FlashAttention's walk over key tiles on tensor cores, with the
exact PPA mask looked up inside each tile.

Near the diagonal the attended distances are dense (the window, then power positions a few slots
apart), so a [BLOCK_M queries, BLOCK_N keys] tile multiplied whole on tensor cores and masked costs
less than gathering its attended rows one by one (prefill.py). This kernel covers the distances
below `split` (chosen by cost_model.py): query t's keys at distance d < split count iff
attended[d]; the gather kernel then adds the distances >= split, starting from the log-sum-exp
this kernel writes. The sinks not at a distance in S are added here as well (sinks.py).

One program owns BLOCK_M consecutive queries of one query head; K and V are read at the head's KV
head (GQA without repeating them: the GROUP heads' programs share the rows through L2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import triton
import triton.language as tl
from numpy.lib.stride_tricks import sliding_window_view

from ppa_eval.kernels.cache_layout import CacheLayout, cache_row
from ppa_eval.kernels.chunks import program_queries
from ppa_eval.kernels.launch import ceil_div, launch
from ppa_eval.kernels.online_softmax import online_softmax_step
from ppa_eval.kernels.sinks import sink_outside_distances
from ppa_eval.kernels.tables import OffsetTables


@dataclass(frozen=True)
class TileShape:
    # Chosen by bench/kernel_tiles.py (all tiles at p = 7/8; results/bench/kernel_tiles.md): 64 x 64
    # x 4 warps was the fastest at 2,048 x 8 and as fast as the fastest at 32,768.
    block_m: int = 64   # queries per program
    block_n: int = 64   # keys per step: one 64-bit word of mask bits per row (32 takes int32 words)
    num_warps: int = 4
    num_stages: int = 3


@triton.jit
def _masked_tile(q, key_slot, allowed, m, l, acc, k_head, v_head, BlockTable, b,
                 stride_kb, stride_kl, stride_vb, stride_vl, stride_tb, qk_scale,
                 HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr):
    """Fold the keys at key_slot ([BLOCK_N]) into the online softmax of q's rows where `allowed`
    ([BLOCK_M, BLOCK_N]). key_slot must name real rows everywhere (the caller clamps the slots past
    its last key to that key, and `allowed` is false there), the block table's entries included: a
    masked-off read of it would name block 0, whose rows (vLLM's null block, or another request's)
    may hold NaN, and a NaN value times a zero probability poisons the row. k_head, v_head: the
    cache at the KV head.

    No load here takes a mask: predicated K/V loads, and the row and key bounds and-ed into
    `allowed`, made the reduced walk of bench/tile_limits.py and this kernel slower
    (results/bench/tile_limits_h200.txt, kernel_tiles.md), all for the one tile per program that
    runs past the last key."""
    dim = tl.arange(0, HEAD_DIM)
    outer, row = cache_row(key_slot, None, BlockTable, b, stride_tb, PAGED, PAGE_SIZE)
    k = tl.load(k_head + (outer * stride_kb + row * stride_kl)[:, None] + dim[None, :])
    s = tl.dot(q, tl.trans(k)) * qk_scale  # [BLOCK_M, BLOCK_N]
    s = tl.where(allowed, s, float("-inf"))
    p, alpha, m, l = online_softmax_step(s, m, l, 1)
    v = tl.load(v_head + (outer * stride_vb + row * stride_vl)[:, None] + dim[None, :])
    return m, l, tl.dot(p.to(v.dtype), v, acc * alpha[:, None])


def _tiles(
    Q, K, V, Out, Lse, RowBits, Counts, KvStart, BlockTable, Programs,
    stride_qb, stride_qh, stride_qt,
    stride_ob, stride_oh, stride_ot,
    stride_lb, stride_lh,
    stride_kb, stride_kh, stride_kl,  # then V's and the block table's: CacheLayout.strides()
    stride_vb, stride_vh, stride_vl,
    stride_tb,
    n_queries, first_slot, n_q_heads, split, sink, n_row_bits, qk_scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_SINK: tl.constexpr, PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr,
):
    # Programs: None, or a step's chunks (chunks.py), whose table then gives n_queries and first_slot.
    b, head, q_batch, first_row, first_query, n_queries, first_slot = program_queries(
        Programs, n_q_heads, n_queries, first_slot, BLOCK_M)
    start = 0
    if KvStart is not None:  # left padding: slots below start hold no token
        start = tl.load(KvStart + b)
    t = first_query + tl.arange(0, BLOCK_M)
    t_ok = t < n_queries
    slot = first_slot + t
    dim = tl.arange(0, HEAD_DIM)
    # Rows past n_queries load the last query again rather than a masked load (their results are
    # never stored): a masked q made the reduced walk of bench/tile_limits.py 5-8% slower.
    q = tl.load(Q + q_batch * stride_qb + head * stride_qh
                + (first_row + tl.minimum(t, n_queries - 1))[:, None] * stride_qt + dim[None, :])
    k_head = K + (head // GROUP) * stride_kh
    v_head = V + (head // GROUP) * stride_vh
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    last_slot = first_slot + tl.minimum(first_query + BLOCK_M, n_queries) - 1
    band_lo = tl.maximum(first_slot + first_query - split + 1, start)
    # The sinks below the band first: only the sinks that neither walk reaches at a distance in S.
    if HAS_SINK:
        sink_end = tl.minimum(start + sink, band_lo)
        for k0 in range(start, sink_end, BLOCK_N):
            key_slot = k0 + tl.arange(0, BLOCK_N)
            key_ok = key_slot < sink_end
            allowed = sink_outside_distances(Counts, key_slot[None, :], slot[:, None], start, sink,
                                             key_ok[None, :] & t_ok[:, None])
            m, l, acc = _masked_tile(q, tl.minimum(key_slot, sink_end - 1), allowed, m, l, acc, k_head,
                                     v_head, BlockTable, b,
                                     stride_kb, stride_kl, stride_vb, stride_vl, stride_tb, qk_scale,
                                     HEAD_DIM, PAGED, PAGE_SIZE)
    j = tl.arange(0, BLOCK_N).to(RowBits.dtype.element_ty)
    for k0 in range(band_lo, last_slot + 1, BLOCK_N):
        key_slot = k0 + tl.arange(0, BLOCK_N)
        # row_bits[e] says, bit j, whether a row whose first key of the tile is at distance
        # e - (BLOCK_N - 1) attends key j of the tile: one load per row instead of one per pair.
        e = tl.minimum(tl.maximum(slot - k0 + BLOCK_N - 1, 0), n_row_bits - 1)
        # The bits alone bound the tile: keys past last_slot are at negative distances from every
        # real query (no bit), and the rows past n_queries are never stored.
        allowed = ((tl.load(RowBits + e)[:, None] >> j[None, :]) & 1) != 0
        key_ok = key_slot <= last_slot
        if HAS_SINK:  # the sinks S does not reach; those it reaches are in the bits or the gather's walk
            allowed = allowed | sink_outside_distances(Counts, key_slot[None, :], slot[:, None], start, sink,
                                                       key_ok[None, :] & t_ok[:, None])
        m, l, acc = _masked_tile(q, tl.minimum(key_slot, last_slot), allowed, m, l, acc, k_head, v_head,
                                 BlockTable, b,
                                 stride_kb, stride_kl, stride_vb, stride_vl, stride_tb, qk_scale,
                                 HEAD_DIM, PAGED, PAGE_SIZE)

    acc = acc / tl.where(l == 0.0, 1.0, l)[:, None]  # rows with no key yet come out 0
    tl.store(Out + q_batch * stride_ob + head * stride_oh + (first_row + t)[:, None] * stride_ot
             + dim[None, :], acc.to(Out.dtype.element_ty), mask=t_ok[:, None])
    # log2-sum-exp2 of the scores seen, -inf for rows that saw none: the gather continues from it.
    # Written also when no gather follows, so that a paged chunk with and one without a far part
    # run one compiled variant (a new variant part-way through serving stalls the step to compile).
    lse = tl.where(l == 0.0, float("-inf"), m + tl.log2(tl.where(l == 0.0, 1.0, l)))
    tl.store(Lse + q_batch * stride_lb + head * stride_lh + first_row + t, lse, mask=t_ok)


# Triton specialises integer arguments by default (values divisible by 16, and 1), which keeps the
# contiguous prefill a little faster (results/bench/kernel_tiles.md). vLLM's steps change their token count (the
# log-sum-exp's strides), query counts, first slots and split from call to call; specialised, every
# new combination would compile another variant part-way through serving, so the paged launches
# take a copy that is not.
PAGED_VARYING = ["stride_lb", "stride_lh", "n_queries", "first_slot"]
_tiles_kernel = triton.jit(_tiles)
_tiles_kernel_paged = triton.jit(do_not_specialize=[*PAGED_VARYING, "split"])(_tiles)


@lru_cache(maxsize=64)
def row_bits(tables: OffsetTables, split: int, block_n: int) -> torch.Tensor:
    """int32 (block_n = 32) or int64 (64) [length + block_n - 1]: entry e, bit j, is 1 iff distance
    d = e - (block_n - 1) - j is attended and 0 <= d < split."""
    if block_n not in (32, 64):
        raise ValueError(f"block_n must be 32 or 64 (one machine word of mask bits per row), got {block_n}")
    allowed = tables.host_attended.copy()  # from the host copy: no device sync
    allowed[split:] = False
    padded = np.concatenate([np.zeros(2 * (block_n - 1), dtype=bool), allowed])  # allowed(i - 2 (block_n - 1))
    # reversed, window e holds padded[e + block_n - 1 - j] at j: distance e - (block_n - 1) - j
    windows = sliding_window_view(padded, block_n)[:, ::-1]
    words = np.packbits(windows, axis=1, bitorder="little").view(f"<i{block_n // 8}")[:, 0]
    return torch.as_tensor(np.ascontiguousarray(words), device=tables.counts.device)


def masked_tiles(q, k, v, out, lse, tables: OffsetTables, split: int, scale: float, *, kv_len: int,
                 cache: CacheLayout, kv_start=None, programs=None, shape: TileShape = TileShape(),
                 launches: list | None = None):
    """Attention of q [B, Hq, Lq, D], the last Lq of kv_len slots, over the keys at distances below
    `split` (and the sinks) of the cache k, v (laid out as `cache` says); writes the normalised
    result to out, and each row's log2-sum-exp2 (in log2 units of scale * log2(e)) to lse, fp32
    [B, Hq, Lq]. programs: a step's chunks instead (chunks.program_table with block_m; B = 1, Lq
    the step's tokens, kv_len unused). launches: a list to append the launch to (launch.launch)."""
    batch, n_q_heads, n_queries, head_dim = q.shape
    bits = row_bits(tables, split, shape.block_n)
    if programs is None:
        grid = (ceil_div(n_queries, shape.block_m), batch * n_q_heads)
    else:
        grid, n_queries, kv_len = (programs.shape[0], n_q_heads), 0, 0  # the table gives both per program
    kernel = _tiles_kernel_paged if cache.paged else _tiles_kernel
    args = (q, k, v, out, lse, bits, tables.counts, kv_start, cache.block_table, programs,
            q.stride(0), q.stride(1), q.stride(2), out.stride(0), out.stride(1), out.stride(2),
            lse.stride(0), lse.stride(1), *cache.strides(),
            n_queries, kv_len - n_queries, n_q_heads, split, tables.sink, bits.shape[0], scale * 1.4426950408889634)
    constants = dict(GROUP=n_q_heads // cache.n_kv_heads, HEAD_DIM=head_dim, BLOCK_M=shape.block_m,
                     BLOCK_N=shape.block_n, HAS_SINK=tables.sink > 0, PAGED=cache.paged, PAGE_SIZE=cache.page_size)
    launch(kernel, grid, args, constants, shape, launches)
    return out
