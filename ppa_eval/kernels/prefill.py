"""PPA prefill: every query of a long sequence, in two parts that share one online softmax.

1. The distances below `split` and the sinks, as masked dense tiles on tensor cores (tiles.py).
2. The distances d >= split, gathered (this file's kernel), starting from part 1's output and
   log-sum-exp. A program owns BLOCK_Q consecutive queries of one sequence and all GROUP query
   heads of one KV head, and walks the far distances BLOCK_C at a time. For one distance the keys
   of the BLOCK_Q queries are BLOCK_Q consecutive rows (the query tile shifted back by d), so each
   step loads a [BLOCK_Q, BLOCK_C] grid of rows that the GROUP heads share. Scores are a batched
   product over queries, K[q] @ Q[q]^T with shape [BLOCK_C, GROUP] per query: the tensor-core
   tile's wide side is the distances, the narrow side the heads of the group (the only rows that
   share a key row at a given distance).

Tiles multiply every pair of their band, attended or not; the gather loads only attended pairs but
pays for each one. cost_model.py picks `split` from costs measured per pair, per query row and per
step of the longest program's walk: for whole sequences, all tiles at high p, tiles below a split of
some thousand distances at p = 3/4 and long sequences, and only the window as tiles at p <= 1/2;
for a short chunk at the end of a long sequence (vLLM), mostly gathered rows
(results/bench/prefill_costs.md).

What limits the gather at long context: each (query, far distance) pair brings its K and V rows
(512 bytes per KV head) from L2 to the SM. Two pairs of a program share a row only where two
distances are closer than BLOCK_Q slots, which is rare once p >= 3/4 (gaps of 10-18 slots around
d = 10^4), so the far part runs at about the L2 bandwidth, slower than dense attention there
(results/bench/prefill_limits.md). Sharing more would take query tiles wider than those gaps, and
their fp32 accumulators do not fit in registers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import triton
import triton.language as tl

from ppa_eval.kernels.cache_layout import CacheLayout, cache_row
from ppa_eval.kernels.chunks import program_queries, program_table
from ppa_eval.kernels.cost_model import choose_split, costs_for
from ppa_eval.kernels.launch import ceil_div, group_block, launch
from ppa_eval.kernels.online_softmax import normalized, online_softmax_step
from ppa_eval.kernels.tables import OffsetTables
from ppa_eval.kernels.tiles import PAGED_VARYING, TileShape, masked_tiles


@dataclass(frozen=True)
class Gather:
    block_q: int = 4    # queries per program
    block_c: int = 32   # far distances per step
    num_warps: int = 4
    num_stages: int = 3


# Chosen by bench/kernel_tiles.py (results/bench/kernel_tiles.md). Long walks (32k, p = 3/4: ~2,100
# far distances per query) want deep software pipelining and wide steps: 4 queries x 32 distances,
# 3 stages, faster than 16 distances. More queries per program would share more key rows, but their
# fp32 accumulators ([BLOCK_Q, HEAD_DIM, GROUP]) crowd out the registers that keep loads in
# flight. Short walks (8 x 2k, p = 1/2: at most ~40 far distances, one to three steps) are
# latency-bound: the pipeline's shared-memory stages only cost occupancy there, and 16 distances
# without pipelining were the faster shape.
LONG_WALK, SHORT_WALK = Gather(), Gather(block_c=16, num_stages=1)
SHORT_WALK_DISTANCES = 256  # a walk over at most this many far distances is short


def _far_gather(
    Q, K, V, Out, Lse, FarDist, Counts, KvStart, BlockTable, Programs,
    stride_qb, stride_qh, stride_qt,
    stride_ob, stride_oh, stride_ot,
    stride_lb, stride_lh,
    stride_kb, stride_kh, stride_kl,  # then V's and the block table's: CacheLayout.strides()
    stride_vb, stride_vh, stride_vl,
    stride_tb,
    n_queries, first_slot, n_kv_heads, n_near, qk_scale,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
    PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr,
):
    # Programs: None, or a step's chunks (chunks.py), whose table then gives n_queries and first_slot.
    b, kv_head, q_batch, first_row, first_query, n_queries, first_slot = program_queries(
        Programs, n_kv_heads, n_queries, first_slot, BLOCK_Q)
    start = 0
    if KvStart is not None:  # left padding: slots below start hold no token
        start = tl.load(KvStart + b)

    t = first_query + tl.arange(0, BLOCK_Q)          # query index
    t_ok = t < n_queries
    slot = first_slot + t                             # its cache slot
    reach = tl.where(t_ok, slot - start, -1)          # farthest distance landing on a real token
    g = tl.arange(0, BLOCK_G)
    row_ok = t_ok[:, None] & (g < GROUP)[None, :]  # [BLOCK_Q, BLOCK_G]: the real (query, head) rows
    dim = tl.arange(0, HEAD_DIM)
    q_base = Q + q_batch * stride_qb + kv_head * GROUP * stride_qh
    k_head = K + kv_head * stride_kh
    v_head = V + kv_head * stride_vh

    # -- start from the tiles' state: normalised output o and log2-sum-exp2 lse give m = lse, l = 1,
    #    acc = o (l = 0 for rows that saw no key: lse = -inf, o = 0) --------------------------------
    heads = kv_head * GROUP + g
    m = tl.load(Lse + q_batch * stride_lb + heads[None, :] * stride_lh + (first_row + t)[:, None],
                mask=row_ok, other=float("-inf"))  # [BLOCK_Q, BLOCK_G]
    l = tl.where(m == float("-inf"), 0.0, 1.0)
    out_ptr = (Out + q_batch * stride_ob + heads[None, None, :] * stride_oh + (first_row + t)[:, None, None] * stride_ot
               + dim[None, :, None])
    acc = tl.load(out_ptr, mask=row_ok[:, None, :], other=0.0).to(tl.float32)
    q_t = tl.load(q_base + g[None, None, :] * stride_qh + (first_row + t)[:, None, None] * stride_qt + dim[None, :, None],
                  mask=row_ok[:, None, :], other=0.0)  # [BLOCK_Q, HEAD_DIM, BLOCK_G]
    max_reach = tl.max(reach, 0)
    # S's distances >= split are FarDist[n_near:]. The kernel takes the whole list and an offset:
    # a slice's pointer is 16-byte aligned for some splits only, and Triton compiles a variant per
    # alignment.
    n_far = tl.maximum(tl.load(Counts + tl.maximum(max_reach, 0)) - n_near, 0)
    for c0 in range(0, n_far, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        d = tl.load(FarDist + n_near + c, mask=c < n_far, other=0)
        ok = (d[None, :] <= reach[:, None]) & (c < n_far)[None, :]       # [BLOCK_Q, BLOCK_C]
        outer, row = cache_row(slot[:, None] - d[None, :], ok, BlockTable, b, stride_tb, PAGED, PAGE_SIZE)
        k = tl.load(k_head + (outer * stride_kb + row * stride_kl)[:, :, None] + dim[None, None, :],
                    mask=ok[:, :, None], other=0.0)
        s = tl.dot(k, q_t) * qk_scale  # [BLOCK_Q, BLOCK_C, BLOCK_G]
        s = tl.where(ok[:, :, None], s, float("-inf"))
        p, alpha, m, l = online_softmax_step(s, m, l, 1)
        v = tl.load(v_head + (outer * stride_vb + row * stride_vl)[:, :, None] + dim[None, None, :],
                    mask=ok[:, :, None], other=0.0)
        acc = acc * alpha[:, None, :] + tl.dot(tl.permute(v, [0, 2, 1]), p.to(v.dtype))

    tl.store(out_ptr, normalized(acc, l, 1).to(Out.dtype.element_ty), mask=row_ok[:, None, :])


# Specialised on its integers for a contiguous cache, not for vLLM's paged chunks (see tiles.py).
_far_gather_kernel = triton.jit(_far_gather)
_far_gather_kernel_paged = triton.jit(do_not_specialize=[*PAGED_VARYING, "n_near"])(_far_gather)


def prefill(q, k, v, out, tables: OffsetTables, scale: float, *, kv_start=None, block_table=None,
            kv_len: int | None = None, split: int | None = None, tiles: TileShape = TileShape(),
            gather: Gather | None = None):
    """PPA of q, out [B, Hq, Lq, D]; query t at slot kv_len - Lq + t of its sequence.

    Contiguous cache: k, v [B, Hkv, Lk, D], kv_len = Lk. Paged cache: k, v [blocks, page, Hkv, D],
    block_table [B, max_pages] and kv_len, every sequence's length (cache_layout.py).
    split: distances below it go to masked tiles, the rest are gathered; None lets the cost model
    choose (cost_model.py). gather: the gather's shape; None picks it by the walk's length."""
    batch, n_q_heads, n_queries, _ = q.shape
    cache = CacheLayout.of(k, v, block_table)
    kv_len = k.shape[2] if kv_len is None else kv_len
    if split is None:
        split = choose_split(tables, ((n_queries, kv_len),) * batch, (tiles.block_m, tiles.block_n), n_q_heads,
                             cache.n_kv_heads, costs_for(q.device))
    n_near, gather = _far_part(tables, split, kv_len, gather)
    lse = torch.empty((batch, n_q_heads, n_queries), dtype=torch.float32, device=q.device)
    masked_tiles(q, k, v, out, lse, tables, split, scale, kv_len=kv_len, cache=cache, kv_start=kv_start, shape=tiles)
    if gather is not None:
        far_gather(q, k, v, out, lse, tables, n_near, scale, kv_len=kv_len, cache=cache, kv_start=kv_start, shape=gather)
    return out


@dataclass(frozen=True, eq=False)
class Chunks:
    """A step's prefill chunks over a paged cache (vLLM), planned on the host once for every layer:
    one split and gather shape for the whole launch, and each kernel's program table (chunks.py)."""
    tables: OffsetTables
    split: int
    n_near: int                 # distances of S below split
    gather: Gather | None       # None: no chunk reaches a distance >= split
    tile_programs: torch.Tensor
    gather_programs: torch.Tensor | None
    query_starts: list[int]     # the step's, one more than its requests
    tiles: TileShape
    # The launches of the step's first layer, for its other layers to replay (replay_chunks), by
    # the layer's layout (_layer_layout); prefill_chunks fills it.
    launches: dict = field(default_factory=dict)


def plan_chunks(tables: OffsetTables, query_starts: list[int], seq_lens: list[int], requests: range,
                n_q_heads: int, n_kv_heads: int, device, *, split: int | None = None, tiles: TileShape = TileShape(),
                gather: Gather | None = None) -> Chunks:
    """Plan the chunks of `requests`: request r's queries are rows query_starts[r] .. query_starts[r + 1] - 1
    of the step's query tensor, the last ones of its seq_lens[r] tokens. split and gather as in prefill()."""
    sizes = tuple((query_starts[r + 1] - query_starts[r], seq_lens[r]) for r in requests
                  if query_starts[r + 1] > query_starts[r])
    if split is None:
        split = choose_split(tables, sizes, (tiles.block_m, tiles.block_n), n_q_heads, n_kv_heads, costs_for(device))
    n_near, gather = _far_part(tables, split, max(seq_len for _, seq_len in sizes), gather)
    return Chunks(tables, split, n_near, gather,
                  program_table(query_starts, seq_lens, requests, tiles.block_m, device),
                  program_table(query_starts, seq_lens, requests, gather.block_q, device) if gather else None,
                  query_starts, tiles)


def prefill_chunks(q, k_cache, v_cache, out, block_table, chunks: Chunks, scale: float):
    """PPA of a step's planned chunks: q, out [tokens, Hq, D] (the step's query rows), over the
    paged cache k_cache, v_cache [blocks, page, Hkv, D] whose pages block_table names per request.
    Keeps the launches in the plan, for the step's later layers to replay (replay_chunks)."""
    cache = CacheLayout.of(k_cache, v_cache, block_table)
    q4, out4 = q.transpose(0, 1)[None], out.transpose(0, 1)[None]  # [1, Hq, tokens, D]: the kernels' layout
    lse = torch.empty((1, q4.shape[1], q4.shape[2]), dtype=torch.float32, device=q.device)
    launches = []
    masked_tiles(q4, k_cache, v_cache, out4, lse, chunks.tables, chunks.split, scale, kv_len=0, cache=cache,
                 programs=chunks.tile_programs, shape=chunks.tiles, launches=launches)
    if chunks.gather is not None:
        far_gather(q4, k_cache, v_cache, out4, lse, chunks.tables, chunks.n_near, scale, kv_len=0, cache=cache,
                   programs=chunks.gather_programs, shape=chunks.gather, launches=launches)
    if None not in launches:
        chunks.launches[_layer_layout(q, k_cache, v_cache, out, block_table, scale)] = launches
    return out


def replay_chunks(q, k_cache, v_cache, out, block_table, chunks: Chunks, scale: float) -> bool:
    """prefill_chunks for a later layer of the step, laid out as one it launched: its launches again
    with this layer's q, k, v and out, without Triton's binding of their ~40 arguments (launch.py).
    False, launching nothing, where no launch of the step was laid out alike."""
    launches = chunks.launches.get(_layer_layout(q, k_cache, v_cache, out, block_table, scale))
    for kept in launches or ():
        kept(q, k_cache, v_cache, out)  # a kernel reads q [tokens, Hq, D] at q4's address, with the strides kept
    return launches is not None


def _layer_layout(q, k_cache, v_cache, out, block_table, scale: float) -> tuple:
    """What a step's launches depend on besides the plan: each tensor's dtype, shape, strides and
    16-byte alignment (Triton compiles a variant per alignment), the block table and the scale.
    Each kept launch holds the block table, so no other tensor takes its address while it is a key."""
    return (scale, block_table.data_ptr(),
            *[(t.dtype, t.shape, t.stride(), t.data_ptr() % 16) for t in (q, k_cache, v_cache, out)])


def _far_part(tables: OffsetTables, split: int, kv_len: int, gather: Gather | None) -> tuple[int, Gather | None]:
    """(distances of S below split, the gather's shape or None where no query reaches past split):
    a short walk, over few far distances, takes SHORT_WALK unless `gather` says otherwise."""
    n_near = int(tables.host_counts[min(split, tables.length) - 1])
    n_far = int(tables.host_counts[kv_len - 1]) - n_near
    if n_far <= 0:
        return n_near, None
    return n_near, gather or (SHORT_WALK if n_far <= SHORT_WALK_DISTANCES else LONG_WALK)


def far_gather(q, k, v, out, lse, tables: OffsetTables, n_near: int, scale: float, *, kv_len: int,
               cache: CacheLayout, kv_start=None, programs=None, shape: Gather = LONG_WALK, launches: list | None = None):
    """Add the distances of S past its first n_near to masked_tiles' result (out, lse), same
    arguments as masked_tiles; programs: chunks.program_table with shape.block_q."""
    batch, n_q_heads, n_queries, head_dim = q.shape
    n_kv_heads = cache.n_kv_heads
    if programs is None:
        grid = (ceil_div(n_queries, shape.block_q), batch * n_kv_heads)
    else:
        grid, n_queries, kv_len = (programs.shape[0], n_kv_heads), 0, 0  # the table gives both per program
    kernel = _far_gather_kernel_paged if cache.paged else _far_gather_kernel
    args = (q, k, v, out, lse, tables.distances, tables.counts, kv_start, cache.block_table, programs,
            q.stride(0), q.stride(1), q.stride(2), out.stride(0), out.stride(1), out.stride(2),
            lse.stride(0), lse.stride(1), *cache.strides(),
            n_queries, kv_len - n_queries, n_kv_heads, n_near, scale * 1.4426950408889634)
    constants = dict(GROUP=n_q_heads // n_kv_heads, BLOCK_G=group_block(n_q_heads // n_kv_heads), HEAD_DIM=head_dim,
                     BLOCK_Q=shape.block_q, BLOCK_C=shape.block_c, PAGED=cache.paged, PAGE_SIZE=cache.page_size)
    launch(kernel, grid, args, constants, shape, launches)
    return out
