"""PPA prefill: every query of a long sequence, in two parts that share one online softmax.

A program owns BLOCK_Q consecutive queries of one sequence and all GROUP query heads of one KV
head (rows are (query, head) pairs), and walks:

1. the window band, distances 0 .. w-1: the keys of all its queries lie in one contiguous run of
   BLOCK_Q + w - 1 slots, so this is ordinary dense attention over key tiles of BLOCK_N, with the
   band |q - k| < w as the mask;
   then the sink slots (the row's first `sink` real slots) the same way, masking out those whose
   distance is in S, which parts 1 and 2 visit;
2. the far distances d >= w, BLOCK_C at a time. For one distance the keys of the BLOCK_Q queries
   are BLOCK_Q consecutive rows (the query tile shifted back by d), so each step loads a
   [BLOCK_Q, BLOCK_C] grid of rows that the GROUP heads share. Scores are a batched product over
   queries, K[q] @ Q[q]^T with shape [BLOCK_C, GROUP] per query: the tensor-core tile's wide side
   is the distances, the narrow side the heads of the group (the only rows that share a key row at
   a given distance).

Only attended (query, key) pairs are loaded and multiplied, apart from padding GROUP up to a power
of two and the tile edges of the band and the sinks; the cost grows as L^(1+p) instead of L^2.

What limits it (H100, L = 32,768): each (query, far distance) pair brings its K and V rows (512
bytes per KV head) from L2 to the SM. Two pairs of a program share a row only where two distances
are closer than BLOCK_Q slots, which is rare once p >= 3/4 (gaps of 10-18 slots around d = 10^4),
so the far part runs at about the L2 bandwidth: some 190 GB in 29 ms at p = 3/4, slower than dense
attention there. Sharing more would take query tiles wider than those gaps, and their fp32
accumulators do not fit in registers.
"""

from __future__ import annotations

from dataclasses import dataclass

import triton
import triton.language as tl

from ppa_eval.kernels.online_softmax import normalized, online_softmax_step
from ppa_eval.kernels.sinks import sink_outside_distances
from ppa_eval.kernels.tables import OffsetTables


@dataclass(frozen=True)
class Tiles:
    # Chosen on an H100 (bench/kernel_tiles.py, L = 32,768): more queries per program would share
    # more key rows, but their fp32 accumulators ([BLOCK_Q, HEAD_DIM, GROUP]) crowd out the
    # registers that keep loads in flight; 4 queries x 16 distances, 3 stages was fastest.
    block_q: int = 4    # queries per program
    block_c: int = 16   # far distances per step
    block_n: int = 64   # keys per step of the window band
    num_warps: int = 4
    num_stages: int = 3


@triton.jit
def _dense_step(key_slot, key_ok, allowed, q_rows, m, l, acc, k_base, v_base, stride_kl, stride_vl, qk_scale,
                HEAD_DIM: tl.constexpr):
    """Fold a tile of consecutive keys ([BLOCK_N], loaded where key_ok) into the rows' online
    softmax; allowed [BLOCK_N, ROWS] says which (key, row) pairs count."""
    dim = tl.arange(0, HEAD_DIM)
    k = tl.load(k_base + key_slot[:, None].to(tl.int64) * stride_kl + dim[None, :], mask=key_ok[:, None], other=0.0)
    s = tl.dot(k, q_rows) * qk_scale  # [BLOCK_N, ROWS]
    s = tl.where(allowed, s, float("-inf"))
    p, alpha, m, l = online_softmax_step(s, m, l, 0)
    v = tl.load(v_base + key_slot[:, None].to(tl.int64) * stride_vl + dim[None, :], mask=key_ok[:, None], other=0.0)
    acc = acc * alpha[None, :] + tl.dot(tl.trans(v), p.to(v.dtype))
    return m, l, acc


@triton.jit
def _prefill_kernel(
    Q, K, V, Out, FarDist, Counts, KvStart,
    stride_qb, stride_qh, stride_qt,
    stride_kb, stride_kh, stride_kl,
    stride_vb, stride_vh, stride_vl,
    stride_ob, stride_oh, stride_ot,
    n_queries, first_slot, n_kv_heads, window, sink, qk_scale,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr, HAS_SINK: tl.constexpr,
):
    tile = tl.program_id(0)
    b = tl.program_id(1) // n_kv_heads
    kv_head = tl.program_id(1) % n_kv_heads
    start = 0
    if KvStart is not None:  # left padding: slots below start hold no token
        start = tl.load(KvStart + b)

    t = tile * BLOCK_Q + tl.arange(0, BLOCK_Q)       # query index
    t_ok = t < n_queries
    slot = first_slot + t                             # its cache slot
    reach = tl.where(t_ok, slot - start, -1)          # farthest distance landing on a real token
    g = tl.arange(0, BLOCK_G)
    g_ok = g < GROUP
    dim = tl.arange(0, HEAD_DIM)
    q_base = Q + b.to(tl.int64) * stride_qb + kv_head * GROUP * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + kv_head * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kv_head * stride_vh

    # -- 1. window band: rows r = (query r // BLOCK_G, head r % BLOCK_G), dense key tiles --------
    ROWS: tl.constexpr = BLOCK_Q * BLOCK_G
    r = tl.arange(0, ROWS)
    r_t = tile * BLOCK_Q + r // BLOCK_G
    r_ok = (r_t < n_queries) & ((r % BLOCK_G) < GROUP)
    r_slot = first_slot + r_t
    q_rows = tl.load(q_base + (r % BLOCK_G)[None, :] * stride_qh + r_t[None, :] * stride_qt + dim[:, None],
                     mask=r_ok[None, :], other=0.0)  # [HEAD_DIM, ROWS]
    m_band = tl.full([ROWS], float("-inf"), tl.float32)
    l_band = tl.zeros([ROWS], tl.float32)
    acc_band = tl.zeros([HEAD_DIM, ROWS], tl.float32)
    last_slot = first_slot + tl.minimum(tile * BLOCK_Q + BLOCK_Q, n_queries) - 1
    band_lo = tl.maximum(first_slot + tile * BLOCK_Q - window + 1, start)
    for k0 in range(band_lo, last_slot + 1, BLOCK_N):
        key_slot = k0 + tl.arange(0, BLOCK_N)
        key_ok = key_slot <= last_slot
        distance = r_slot[None, :] - key_slot[:, None]
        allowed = (distance >= 0) & (distance < window) & key_ok[:, None] & r_ok[None, :]
        m_band, l_band, acc_band = _dense_step(key_slot, key_ok, allowed, q_rows, m_band, l_band, acc_band,
                                               k_base, v_base, stride_kl, stride_vl, qk_scale, HEAD_DIM)
    # -- 1b. sinks: the first `sink` real slots, in the same layout, less the keys whose distance
    #        is in S (the band and the far walk visit those, and softmax must see each key once)
    #        Compiled in only for patterns with sinks: a second pipelined loop, even one that never
    #        runs, costs the sink-free kernel its shared memory and speed (measured on the H200).
    if HAS_SINK:
        sink_end = tl.minimum(start + sink, last_slot + 1)
        for k0 in range(start, sink_end, BLOCK_N):
            key_slot = k0 + tl.arange(0, BLOCK_N)
            key_ok = key_slot < sink_end
            allowed = sink_outside_distances(Counts, key_slot[:, None], r_slot[None, :], start, sink,
                                             key_ok[:, None] & r_ok[None, :])
            m_band, l_band, acc_band = _dense_step(key_slot, key_ok, allowed, q_rows, m_band, l_band, acc_band,
                                                   k_base, v_base, stride_kl, stride_vl, qk_scale, HEAD_DIM)

    # -- 2. far distances: the same state, regrouped per query as [BLOCK_Q, ..., BLOCK_G] ---------
    m = tl.reshape(m_band, [BLOCK_Q, BLOCK_G])
    l = tl.reshape(l_band, [BLOCK_Q, BLOCK_G])
    acc = tl.permute(tl.reshape(acc_band, [HEAD_DIM, BLOCK_Q, BLOCK_G]), [1, 0, 2])  # [BLOCK_Q, HEAD_DIM, BLOCK_G]
    q_t = tl.load(q_base + g[None, None, :] * stride_qh + t[:, None, None] * stride_qt + dim[None, :, None],
                  mask=t_ok[:, None, None] & g_ok[None, None, :], other=0.0)  # [BLOCK_Q, HEAD_DIM, BLOCK_G]
    max_reach = tl.max(reach, 0)
    n_far = tl.where(max_reach >= window, tl.load(Counts + tl.maximum(max_reach, 0)) - window, 0)
    for c0 in range(0, n_far, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        d = tl.load(FarDist + c, mask=c < n_far, other=0)
        ok = (d[None, :] <= reach[:, None]) & (c < n_far)[None, :]       # [BLOCK_Q, BLOCK_C]
        key_slot = (slot[:, None] - d[None, :]).to(tl.int64)
        k = tl.load(k_base + key_slot[:, :, None] * stride_kl + dim[None, None, :], mask=ok[:, :, None], other=0.0)
        s = tl.dot(k, q_t) * qk_scale  # [BLOCK_Q, BLOCK_C, BLOCK_G]
        s = tl.where(ok[:, :, None], s, float("-inf"))
        p, alpha, m, l = online_softmax_step(s, m, l, 1)
        v = tl.load(v_base + key_slot[:, :, None] * stride_vl + dim[None, None, :], mask=ok[:, :, None], other=0.0)
        acc = acc * alpha[:, None, :] + tl.dot(tl.permute(v, [0, 2, 1]), p.to(v.dtype))

    out = normalized(acc, l, 1)
    tl.store(
        Out + b.to(tl.int64) * stride_ob + (kv_head * GROUP + g)[None, None, :] * stride_oh
        + t[:, None, None] * stride_ot + dim[None, :, None],
        out.to(Out.dtype.element_ty), mask=t_ok[:, None, None] & g_ok[None, None, :],
    )


def prefill(q, k, v, out, tables: OffsetTables, scale: float, *, kv_start=None, tiles: Tiles = Tiles()):
    """Launch the prefill kernel: q, out [B, Hq, Lq, D]; k, v [B, Hkv, Lk, D]; query t at slot Lk - Lq + t."""
    batch, n_q_heads, n_queries, head_dim = q.shape
    n_kv_heads, kv_len = k.shape[1], k.shape[2]
    group = n_q_heads // n_kv_heads
    grid = (triton.cdiv(n_queries, tiles.block_q), batch * n_kv_heads)
    _prefill_kernel[grid](
        q, k, v, out, tables.distances[tables.window:], tables.counts, kv_start,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
        n_queries, kv_len - n_queries, n_kv_heads, tables.window, tables.sink, scale * 1.4426950408889634,
        GROUP=group, BLOCK_G=max(triton.next_power_of_2(group), 8), HEAD_DIM=head_dim,
        BLOCK_Q=tiles.block_q, BLOCK_C=tiles.block_c, BLOCK_N=tiles.block_n, HAS_SINK=tables.sink > 0,
        num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    return out
