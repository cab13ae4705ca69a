"""Where prefill stops multiplying dense tiles and starts gathering rows: a measured cost model.

A masked tile costs the same for every pair in it, attended or not; a gathered pair costs about
ten times more but only attended pairs are paid for. The attended density of S falls with the
distance (about p * d^(p-1)), so the cheapest plan is tiles for the distances below some `split`
and gathering above it. For each candidate split the model counts, exactly and on the host from
the pattern's tables, the work each kernel would do in this call (`Work`) and prices it with the
costs measured on the GPU by bench/prefill_costs.py.

Each kernel costs the larger of two times:
  - throughput: its pairs (and, for the gather, the query rows it re-reads from the tiles' output
    and writes back), when enough programs run to fill the GPU;
  - latency: the serial walk of its longest program, which is all that is left when few programs
    run, e.g. a short vLLM chunk at the end of a long sequence (11 queries of 7,675 keys as
    all tiles: 9 programs of 120 key tiles each, whose walk takes many times its pairs' throughput
    time).
The costs are at head size 128; every term scales with the head size (each pair, row or step
moves head_dim numbers), which leaves the choice of split unchanged.

Where FlashAttention-4 runs (flash4.py), a whole sequence can also go to its masked kernel, which
costs the same for every 128 x 128 tile it visits, plus the start and the output of each query
tile; the model takes it when that is cheaper than the best split.

The costs are fitted per GPU (FITS, by the device's name). A GPU without a fit takes UNFITTED, the
fit of the first GPU measured: on the other GPU measured, its plans put every prefill at p <= 1/2
below dense, and at p >= 3/4 every plan is bound by the dense tile walk (results/bench/
attention_*.md). Pricing the gather higher "to be safe" instead moved whole-sequence p = 1/2
prefill from the gather to all tiles, the slower plan. `bench/prefill_costs.py` fits a new GPU.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Costs:
    """One GPU's measured costs, in ns at head size 128 (bf16, the default tile and gather shapes of
    prefill.py), fitted by bench/prefill_costs.py."""
    tile_pair: float               # one (query, key) pair of a masked tile, one query head
    gathered_pair: float           # one (query, far distance) pair, one KV head with its group
    gathered_row: float            # one query row's second pass (tiles' output and lse in, result out)
    tile_walked_key: float         # one key of the longest tile program's walk
    gather_walked_distance: float  # one far distance of the longest gather program's walk
    flash4_tile: float             # one 128 x 128 tile of FlashAttention-4's masked kernel, one query head
    flash4_query_tile: float       # one query tile of it (its start and its output), one query head


# Keyed by a substring of torch.cuda.get_device_name(). Each fit's GPU, date and picks against the
# fastest measured plans: results/bench/prefill_costs[_<gpu>].md.
FITS = {
    "H200": Costs(tile_pair=0.001553, gathered_pair=0.07544, gathered_row=0.4662, tile_walked_key=40.57,
                  gather_walked_distance=155.1, flash4_tile=13.47, flash4_query_tile=24.82),
}
UNFITTED = FITS["H200"]


def fit_for(gpu_name: str) -> Costs:
    """The fit whose key is in the GPU's name, else UNFITTED."""
    return next((costs for key, costs in FITS.items() if key in gpu_name), UNFITTED)


@lru_cache(maxsize=8)
def costs_for(device) -> Costs:
    """The fit of this device's GPU; UNFITTED for the CPU (Triton's interpreter, where only the results count)."""
    import torch

    device = torch.device(device)
    return fit_for(torch.cuda.get_device_name(device)) if device.type == "cuda" else UNFITTED


@dataclass(frozen=True)
class Work:
    """What one prefill call does at one split, per kernel."""
    tile_pairs: int      # (query, key) pairs in the tiles, times query heads and batch
    tile_walk: int       # keys the longest tile program walks
    gathered_pairs: int  # (query, far distance) pairs, times KV heads and batch; 0: no gather launch
    gathered_rows: int   # query rows the gather passes over, times query heads and batch
    gather_walk: int     # far distances the farthest-reaching gather program walks


def tile_pairs(split: int, n_queries: int, kv_len: int, block_m: int, block_n: int) -> int:
    """(query, key) pairs in the tiles that cover distances below `split` for every query."""
    return int(_tile_walks(split, n_queries, kv_len, block_m, block_n).sum()) * block_m


def _tile_walks(split: int, n_queries: int, kv_len: int, block_m: int, block_n: int) -> np.ndarray:
    """Keys each tile program walks (whole key tiles), program by program."""
    first_slot = kv_len - n_queries
    q_lo = first_slot + np.arange(0, n_queries, block_m)
    q_hi = np.minimum(q_lo + block_m, kv_len) - 1
    k_lo = np.maximum(q_lo - split + 1, 0)
    return -(-(q_hi - k_lo + 1) // block_n) * block_n


def gathered_pairs(counts: np.ndarray, split: int, n_queries: int, kv_len: int) -> int:
    """(query, attended distance >= split) pairs: counts[r] attended distances lie within reach r."""
    reach = counts[kv_len - n_queries:kv_len].astype(np.int64)
    return int(np.maximum(reach - counts[split - 1], 0).sum())


def work(split, counts, n_queries, kv_len, shape, batch, n_q_heads, n_kv_heads) -> Work:
    """The work of prefilling the last n_queries of kv_len slots with the distances below `split` as
    tiles of shape (block_m, block_n) and the rest gathered; counts: the pattern's host counts."""
    far = gathered_pairs(counts, split, n_queries, kv_len)
    return Work(
        tile_pairs=tile_pairs(split, n_queries, kv_len, *shape) * batch * n_q_heads,
        tile_walk=int(_tile_walks(split, n_queries, kv_len, *shape).max()),
        gathered_pairs=far * batch * n_kv_heads,
        gathered_rows=n_queries * batch * n_q_heads if far else 0,
        gather_walk=max(int(counts[kv_len - 1]) - int(counts[split - 1]), 0) if far else 0,
    )


def estimated_ns(w: Work, costs: Costs) -> float:
    """The model's time for one prefill call (ns, at head size 128)."""
    tiles = max(w.tile_pairs * costs.tile_pair, w.tile_walk * costs.tile_walked_key)
    gather = max(w.gathered_pairs * costs.gathered_pair + w.gathered_rows * costs.gathered_row,
                 w.gather_walk * costs.gather_walked_distance) if w.gathered_pairs else 0.0
    return tiles + gather


def candidate_splits(window: int, kv_len: int) -> list[int]:
    """The splits the model weighs: the window, the powers of two from 64 between it and kv_len,
    and kv_len (all tiles)."""
    powers_of_two = {1 << k for k in range(6, kv_len.bit_length()) if window < 1 << k < kv_len}
    return sorted({max(window, 1), kv_len} | powers_of_two)


def launch_work(split, counts, chunks: Counter, shape, n_q_heads, n_kv_heads) -> Work:
    """The work of one launch over several sequences' chunks, {(n_queries, kv_len): sequences}:
    pairs and rows add up, and the longest walk of any program bounds the latency."""
    works = [work(split, counts, n_queries, kv_len, shape, batch, n_q_heads, n_kv_heads)
             for (n_queries, kv_len), batch in chunks.items()]
    return Work(tile_pairs=sum(w.tile_pairs for w in works), tile_walk=max(w.tile_walk for w in works),
                gathered_pairs=sum(w.gathered_pairs for w in works),
                gathered_rows=sum(w.gathered_rows for w in works), gather_walk=max(w.gather_walk for w in works))


@lru_cache(maxsize=256)  # OffsetTables hash by identity and are cached themselves
def choose_split(tables, chunks: tuple[tuple[int, int], ...], shape: tuple[int, int], n_q_heads: int,
                 n_kv_heads: int, costs: Costs) -> int:
    """The candidate split (distances below it as tiles of shape (block_m, block_n), the rest
    gathered) with the least estimated time for one launch over `chunks`, (n_queries, kv_len) per
    sequence: the last n_queries of each sequence's kv_len slots."""
    counted = Counter(chunks)
    return min(candidate_splits(tables.window, max(kv_len for _, kv_len in counted)), key=lambda split: estimated_ns(
        launch_work(split, tables.host_counts, counted, shape, n_q_heads, n_kv_heads), costs))


def flash4_ns(tiles: int, query_tiles: int, costs: Costs) -> float:
    """The model's time for FlashAttention-4's masked kernel (ns, at head size 128): `tiles` visited
    and `query_tiles`, both counted per query head and row of the batch."""
    return tiles * costs.flash4_tile + query_tiles * costs.flash4_query_tile


@lru_cache(maxsize=256)  # asked once per layer of every prefill with the same arguments (results/bench/host_costs.md)
def flash4_is_cheaper(tables, tiles_visited: int, query_tiles: int, kv_len: int, shape: tuple[int, int], batch: int,
                      n_q_heads: int, n_kv_heads: int, costs: Costs) -> bool:
    """For a whole sequence: is FlashAttention-4's masked kernel (the tiles it visits and its query
    tiles per row and head, flash4.tile_lists) cheaper than the best split of tiles of `shape` and gather?"""
    split = choose_split(tables, ((kv_len, kv_len),) * batch, shape, n_q_heads, n_kv_heads, costs)
    best_split_ns = estimated_ns(work(split, tables.host_counts, kv_len, kv_len, shape, batch, n_q_heads, n_kv_heads),
                                 costs)
    per_row_and_head = batch * n_q_heads
    return flash4_ns(tiles_visited * per_row_and_head, query_tiles * per_row_and_head, costs) < best_split_ns
