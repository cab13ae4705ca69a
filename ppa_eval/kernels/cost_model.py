"""Where prefill stops multiplying dense tiles and starts gathering rows: a measured cost model.

A masked tile costs the same for every pair in it, attended or not; a gathered pair costs about
ten times more but only attended pairs are paid for. The attended density of S falls with the
distance (about p * d^(p-1)), so the cheapest plan is tiles for the distances below some `split`
and gathering above it. For each candidate split the model counts the pairs each kernel would
handle for this call (exactly, on the host, from the pattern's tables) and prices them with the
per-pair costs measured on the GPU by bench/prefill_costs.py.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Fitted by bench/prefill_costs.py on one NVIDIA H200, 2026-12-01 (bf16, head 128, the default tile
# and gather shapes of prefill.py; 96 timed (case, split) pairs); ns per pair:
TILE_NS_PER_PAIR_AND_HEAD = 0.001621      # one (query, key) pair of a masked tile, one query head
GATHER_NS_PER_PAIR_AND_KV_HEAD = 0.07372  # one (query, far distance) pair, one KV head with its group
GATHER_LAUNCH_NS = 323_000.0              # what a gather costs beyond its pairs (fitted, not a launch alone)


def tile_pairs(split: int, n_queries: int, kv_len: int, block_m: int, block_n: int) -> int:
    """(query, key) pairs in the tiles that cover distances below `split` for every query."""
    first_slot = kv_len - n_queries
    q_lo = first_slot + np.arange(0, n_queries, block_m)
    q_hi = np.minimum(q_lo + block_m, kv_len) - 1
    k_lo = np.maximum(q_lo - split + 1, 0)
    return int((-(-(q_hi - k_lo + 1) // block_n)).sum()) * block_m * block_n


def gathered_pairs(counts: np.ndarray, split: int, n_queries: int, kv_len: int) -> int:
    """(query, attended distance >= split) pairs: counts[r] attended distances lie within reach r."""
    reach = counts[kv_len - n_queries:kv_len].astype(np.int64)
    return int(np.maximum(reach - counts[split - 1], 0).sum())


def estimated_ns(split, counts, n_queries, kv_len, shape, batch, n_q_heads, n_kv_heads) -> float:
    """The model's time for one prefill call (ns): its tile pairs and gathered pairs, priced."""
    far = gathered_pairs(counts, split, n_queries, kv_len) * batch * n_kv_heads
    tiles = tile_pairs(split, n_queries, kv_len, *shape) * batch * n_q_heads
    return tiles * TILE_NS_PER_PAIR_AND_HEAD + (far * GATHER_NS_PER_PAIR_AND_KV_HEAD + GATHER_LAUNCH_NS if far else 0.0)


def candidate_splits(window: int, kv_len: int) -> list[int]:
    """The splits the model weighs: the window, the powers of two from 64 between it and kv_len,
    and kv_len (all tiles)."""
    powers_of_two = {1 << k for k in range(6, kv_len.bit_length()) if window < 1 << k < kv_len}
    return sorted({max(window, 1), kv_len} | powers_of_two)


@lru_cache(maxsize=256)  # OffsetTables hash by identity and are cached themselves
def choose_split(tables, n_queries: int, kv_len: int, shape: tuple[int, int], batch: int, n_q_heads: int,
                 n_kv_heads: int) -> int:
    """The candidate split (distances below it as tiles of shape (block_m, block_n), the rest
    gathered) with the least estimated time."""
    return min(candidate_splits(tables.window, kv_len), key=lambda split: estimated_ns(split, tables.host_counts, n_queries, kv_len, shape,
                                                          batch, n_q_heads, n_kv_heads))
