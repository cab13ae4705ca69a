"""PPA decode: a few queries per sequence against a long KV cache, reading only the attended rows.

Bandwidth-bound: the work is reading |S| key rows and |S| value rows per (sequence, KV head), and
the rows sit at scattered slots. The kernel gathers them straight from the cache (contiguous
[B, Hkv, L, D] or paged [blocks, page, Hkv, D]) in blocks of BLOCK_N distances, with all GROUP
query heads of a KV head sharing each row it loads, and runs an online softmax. Long caches give
too few (sequence, head) pairs to fill the GPU, so the distance list is cut into splits, each
program writes an unnormalised partial result, and the last split of a row to finish merges them
(flash-decoding without its second launch: each launch costs the host time, every layer of every
decode step, and decode steps are host-bound; results/bench/host_costs.md). A walk of a few blocks is not split:
its one program per row writes the output. The sink slots that S does not already reach are a short extra walk
of split 0. Scores are computed as K @ q^T ([BLOCK_N, GROUP]), so the tensor-core tile's wide side
is the gathered keys and the narrow side the few heads of the group.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import triton
import triton.language as tl

from ppa_eval.kernels.cache_layout import CacheLayout, cache_row
from ppa_eval.kernels.launch import ceil_div, group_block
from ppa_eval.kernels.online_softmax import normalized, online_softmax_step
from ppa_eval.kernels.sinks import sink_outside_distances
from ppa_eval.kernels.tables import OffsetTables


@dataclass(frozen=True)
class Tiles:
    block_n: int = 64          # distances (gathered rows) per step
    programs_per_sm: int = 4   # enough programs in flight to keep HBM busy with scattered 256-byte reads
    num_warps: int = 4
    num_stages: int = 3
    # A walk of at most this many blocks is not split: one program per row writes the output itself,
    # with no partial results to allocate and no arrival counters to zero. Splitting so short a walk
    # saves the GPU less than those cost the host, every layer of every step.
    unsplit_blocks: int = 4


@triton.jit
def _attend_rows(
    key_slot, ok, q_t, m, l, acc, K, V, BlockTable, b, kv_head,
    stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl, stride_tb, qk_scale,
    HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr,
):
    """Fold the key rows at `key_slot` ([BLOCK_N], those where `ok`) into the group's online softmax."""
    dim = tl.arange(0, HEAD_DIM)
    outer, row = cache_row(key_slot, ok, BlockTable, b, stride_tb, PAGED, PAGE_SIZE)
    k = tl.load(K + kv_head * stride_kh + (outer * stride_kb + row * stride_kl)[:, None] + dim[None, :],
                mask=ok[:, None], other=0.0)
    s = tl.dot(k, q_t) * qk_scale  # [BLOCK_N, BLOCK_G]
    s = tl.where(ok[:, None], s, float("-inf"))
    p, alpha, m, l = online_softmax_step(s, m, l, 0)
    v = tl.load(V + kv_head * stride_vh + (outer * stride_vb + row * stride_vl)[:, None] + dim[None, :],
                mask=ok[:, None], other=0.0)
    acc = acc * alpha[None, :] + tl.dot(tl.trans(v), p.to(v.dtype))
    return m, l, acc


# The cache length and the split size change at every decode step. Specialised, as Triton does by
# default with integers (values divisible by 16, and 1), each new combination would compile another
# variant of the kernel part-way through a generation.
@triton.jit(do_not_specialize=["kv_len", "blocks_per_split"])
def _decode_split_kernel(
    Q, K, V, Part, Arrivals, Out, Dist, Counts, KvStart, SeqLens, BlockTable,
    stride_qb, stride_qh, stride_qt,
    stride_ob, stride_oh, stride_ot,
    stride_kb, stride_kh, stride_kl,  # then V's and the block table's: CacheLayout.strides()
    stride_vb, stride_vh, stride_vl,
    stride_tb,
    kv_len, n_queries, n_kv_heads, blocks_per_split, sink, qk_scale,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
    PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr, HAS_SINK: tl.constexpr, UNSPLIT: tl.constexpr,
):
    # One program: one (sequence b, KV head, query t) and one split of the distance list.
    row = tl.program_id(0)
    split = tl.program_id(1)
    n_splits = tl.num_programs(1)
    t = row % n_queries
    kv_head = (row // n_queries) % n_kv_heads
    b = row // (n_queries * n_kv_heads)

    if SeqLens is not None:  # lengths on the device: a paged cache, or a static one in a CUDA graph
        kv_len = tl.load(SeqLens + b)
    start = 0
    if KvStart is not None:  # left padding: slots below start hold no token
        start = tl.load(KvStart + b)
    slot = kv_len - n_queries + t       # the query's own slot; distances count back from it
    reach = slot - start                 # the farthest distance that still lands on a real token
    n_valid = tl.where(reach >= 0, tl.load(Counts + tl.maximum(reach, 0)), 0)

    g = tl.arange(0, BLOCK_G)
    dim = tl.arange(0, HEAD_DIM)
    head = kv_head * GROUP + g
    q_t = tl.load(
        Q + b.to(tl.int64) * stride_qb + head[None, :] * stride_qh + t * stride_qt + dim[:, None],
        mask=(g < GROUP)[None, :], other=0.0,
    )  # [HEAD_DIM, BLOCK_G]

    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([HEAD_DIM, BLOCK_G], tl.float32)
    first = split * blocks_per_split * BLOCK_N
    last = tl.minimum(first + blocks_per_split * BLOCK_N, n_valid)
    for i0 in range(first, last, BLOCK_N):
        i = i0 + tl.arange(0, BLOCK_N)
        ok = i < last
        key_slot = slot - tl.load(Dist + i, mask=ok, other=0)
        m, l, acc = _attend_rows(key_slot, ok, q_t, m, l, acc, K, V, BlockTable, b, kv_head,
                                 stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl, stride_tb,
                                 qk_scale, HEAD_DIM, PAGED, PAGE_SIZE)
    # The sinks, in split 0: the first real slots up to the query, less those the list above holds.
    # Compiled in only for patterns with sinks, so that the sink-free kernel stays as it was.
    if HAS_SINK:
        n_sink = tl.where(split == 0, tl.minimum(sink, reach + 1), 0)
        for u0 in range(0, n_sink, BLOCK_N):
            u = u0 + tl.arange(0, BLOCK_N)
            key_slot = start + u
            ok = sink_outside_distances(Counts, key_slot, slot, start, sink, u < n_sink)
            m, l, acc = _attend_rows(key_slot, ok, q_t, m, l, acc, K, V, BlockTable, b, kv_head,
                                     stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl, stride_tb,
                                     qk_scale, HEAD_DIM, PAGED, PAGE_SIZE)

    if UNSPLIT:  # the whole walk: the output itself
        _store_output(normalized(acc, l, 0), Out, b, kv_head, t, stride_ob, stride_oh, stride_ot,
                      GROUP, BLOCK_G, HEAD_DIM)
    else:
        part = row * n_splits + split
        part_o, part_m, part_l = _partials(Part, tl.num_programs(0) * n_splits, HEAD_DIM, BLOCK_G)
        tl.store(part_o + (part * HEAD_DIM + dim[:, None]) * BLOCK_G + g[None, :], acc)
        tl.store(part_m + part * BLOCK_G + g, m)
        tl.store(part_l + part * BLOCK_G + g, l)
        # Every thread's stores first, then one release-acquire count per row: the program that
        # counts last sees all the partial results, merges them and zeroes the count for the next launch.
        tl.debug_barrier()
        if tl.atomic_add(Arrivals + row, 1, sem="acq_rel", scope="gpu") == n_splits - 1:
            _merge_splits(part_o, part_m, part_l, Out, row, b, kv_head, t, n_splits, stride_ob, stride_oh, stride_ot,
                          GROUP, BLOCK_G, HEAD_DIM)
            tl.store(Arrivals + row, 0)


@triton.jit
def _partials(Part, n_parts, HEAD_DIM: tl.constexpr, BLOCK_G: tl.constexpr):
    """Where the partial accumulators, maxima and sums of n_parts (row, split) pairs start in Part."""
    part_o = Part
    part_m = part_o + n_parts * HEAD_DIM * BLOCK_G
    part_l = part_m + n_parts * BLOCK_G
    return part_o, part_m, part_l


@triton.jit
def _store_output(out, Out, b, kv_head, t, stride_ob, stride_oh, stride_ot,
                  GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Write a row's normalised [HEAD_DIM, BLOCK_G] result to its GROUP heads of Out."""
    g = tl.arange(0, BLOCK_G)
    dim = tl.arange(0, HEAD_DIM)
    head = kv_head * GROUP + g
    tl.store(
        Out + b.to(tl.int64) * stride_ob + head[None, :] * stride_oh + t * stride_ot + dim[:, None],
        out.to(Out.dtype.element_ty), mask=(g < GROUP)[None, :],
    )


@triton.jit
def _merge_splits(part_o, part_m, part_l, Out, row, b, kv_head, t, n_splits, stride_ob, stride_oh, stride_ot,
                  GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Merge the splits of one (b, KV head, t): rescale each partial to the common maximum. The loads
    skip L1 (.cg): the partials were written by other SMs during this launch."""
    g = tl.arange(0, BLOCK_G)
    dim = tl.arange(0, HEAD_DIM)
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([HEAD_DIM, BLOCK_G], tl.float32)
    for split in range(n_splits):
        part = row * n_splits + split
        m_s = tl.load(part_m + part * BLOCK_G + g, cache_modifier=".cg")
        m_new = tl.maximum(m, m_s)
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha, beta = tl.exp2(m - shift), tl.exp2(m_s - shift)
        l = l * alpha + tl.load(part_l + part * BLOCK_G + g, cache_modifier=".cg") * beta
        o_s = tl.load(part_o + (part * HEAD_DIM + dim[:, None]) * BLOCK_G + g[None, :], cache_modifier=".cg")
        acc = acc * alpha[None, :] + o_s * beta[None, :]
        m = m_new

    _store_output(normalized(acc, l, 0), Out, b, kv_head, t, stride_ob, stride_oh, stride_ot,
                  GROUP, BLOCK_G, HEAD_DIM)


# The split walks' arrival counters, one buffer per (device, stream), all zero between launches: the
# program that counts a row last zeroes it. A fresh zeroed buffer per call would cost the host one
# more launch per layer and step (results/bench/host_costs.md). Launches on one stream never overlap, those on
# two streams get two buffers; a grown buffer keeps its predecessor, which a captured CUDA graph may use.
_arrivals: dict[tuple, list[torch.Tensor]] = {}


def _arrival_counters(n_rows: int, device: torch.device) -> torch.Tensor:
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    buffers = _arrivals.setdefault((device, stream), [])
    if not buffers or len(buffers[-1]) < n_rows:
        buffers.append(torch.zeros(max(n_rows, 4096), device=device, dtype=torch.int32))
    return buffers[-1]


@cache
def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def _splits(n_rows: int, n_blocks: int, programs_per_sm: int, device: torch.device) -> tuple[int, int]:
    """(splits, blocks per split) so that about programs_per_sm programs run on each SM."""
    wanted = max(1, min(ceil_div(programs_per_sm * _multiprocessors(device), n_rows), n_blocks))
    per_split = ceil_div(n_blocks, wanted)
    return ceil_div(n_blocks, per_split), per_split


def decode(q, k, v, out, tables: OffsetTables, scale: float, *, max_reach: int,
           kv_len: int = 0, kv_start=None, block_table=None, seq_lens=None, tiles: Tiles = Tiles()):
    """Launch the decode kernel. Shapes and layouts are checked by the caller (ppa_eval.kernels).

    q [B, Hq, Lq, D] and out [B, Hq, Lq, D] (any strides, last one 1); the query t of sequence b
    sits at slot seq_len(b) - Lq + t, where seq_len(b) = seq_lens[b] (int32 [B] on the device) or,
    without seq_lens, kv_len. Contiguous cache: k, v [B, Hkv, L, D]. Paged cache: k, v [num_blocks,
    page_size, Hkv, D], block_table [B, max_blocks] and seq_lens (cache_layout.py). max_reach
    bounds every query's farthest distance.
    """
    batch, n_q_heads, n_queries, head_dim = q.shape
    cache = CacheLayout.of(k, v, block_table)
    n_kv_heads = cache.n_kv_heads
    group = n_q_heads // n_kv_heads
    block_g = group_block(group)

    n_rows = batch * n_kv_heads * n_queries
    n_blocks = max(1, ceil_div(int(tables.host_counts[max_reach]), tiles.block_n))
    if n_blocks <= tiles.unsplit_blocks:
        n_splits, per_split = 1, n_blocks
    else:
        n_splits, per_split = _splits(n_rows, n_blocks, tiles.programs_per_sm, q.device)
    unsplit = n_splits == 1
    partials = arrivals = None  # only a split walk has them (_partials lays them out)
    if not unsplit:
        partials = torch.empty(n_rows * n_splits * block_g * (head_dim + 2), device=q.device, dtype=torch.float32)
        arrivals = _arrival_counters(n_rows, q.device)

    _decode_split_kernel[(n_rows, n_splits)](
        q, k, v, partials, arrivals, out, tables.distances, tables.counts, kv_start, seq_lens, block_table,
        *q.stride()[:3], *out.stride()[:3], *cache.strides(),
        kv_len, n_queries, n_kv_heads, per_split, tables.sink, scale * 1.4426950408889634,
        GROUP=group, BLOCK_G=block_g, HEAD_DIM=head_dim, BLOCK_N=tiles.block_n,
        PAGED=cache.paged, PAGE_SIZE=cache.page_size, HAS_SINK=tables.sink > 0, UNSPLIT=unsplit,
        num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    return out
