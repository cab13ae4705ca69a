"""The multi-layer receptive field of the last position: through how many layers each earlier
position's information can reach it.

One attention layer moves information from key k to query i when i attends k, so the fewest
layers from k to the last position L-1 is the shortest path k -> ... -> L-1 in the pattern's DAG
(a position keeps what it had through the residual stream, so "within n layers" is monotone).

Computed by breadth-first search backwards from L-1, over block distances r = A - b from the last
position's block A, where the pattern is translation-invariant: one layer takes the reached set R
to R + D (a sumset, D the block distances of the pattern). Each step is a numpy outer sum when the
frontier is small and an FFT convolution of indicator vectors when it is not, so L = 131,072 takes
well under a second whatever the pattern. Then:
  - sinks: blocks b < S are attended by every query, so they are one layer away; a path through a
    sink cannot help anything else, because a sink only attends keys before it (also sinks).
  - tokens: every block before A is attended whole, so its tokens share its block's distance;
    the tokens of block A before L-1 reach it in one layer (its own block, when attended).
"""

from __future__ import annotations

import numpy as np

from ppa_eval.patterns.base import BlockPattern

UNREACHABLE = -1
_DIRECT_SUMSET = 1 << 21  # frontier x offsets pairs below which an outer sum beats an FFT


def layers_to_last(pattern: BlockPattern, length: int) -> np.ndarray:
    """int64 [length]: for each position k, the fewest layers from k to position length-1 (0 for
    itself, UNREACHABLE when no path exists)."""
    block = pattern.block
    last_block = (length - 1) // block
    n = last_block + 1
    table = pattern.distance_table(n)
    offsets = np.flatnonzero(table[1:]) + 1
    layers = np.full(n, UNREACHABLE, dtype=np.int64)  # over r = last_block - b
    layers[0] = 0
    frontier, step = np.zeros(1, dtype=np.int64), 0
    while len(frontier) and len(offsets):
        step += 1
        reached = _sumset(frontier, offsets, n)
        frontier = reached[layers[reached] == UNREACHABLE]
        layers[frontier] = step
    sinks = layers[n - min(pattern.sink, n):]  # r >= n - sink: blocks b < sink
    sinks[sinks != 0] = 1
    tokens = layers[last_block - np.arange(length) // block]
    own_block = bool(table[0] or last_block < pattern.sink)
    tokens[last_block * block:length - 1] = 1 if own_block else UNREACHABLE
    tokens[length - 1] = 0
    return tokens


def _sumset(frontier: np.ndarray, offsets: np.ndarray, n: int) -> np.ndarray:
    """Sorted unique values of frontier + offsets below n."""
    if len(frontier) * len(offsets) <= _DIRECT_SUMSET:
        sums = (frontier[:, None] + offsets[None, :]).ravel()
        return np.unique(sums[sums < n])
    size = 1 << (2 * n - 1).bit_length()
    a, b = np.zeros(n), np.zeros(n)
    a[frontier], b[offsets[offsets < n]] = 1.0, 1.0
    counts = np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:n]
    return np.flatnonzero(counts > 0.5)  # exact integer counts up to float error far below 0.5


def summarize(layers: np.ndarray, within: int) -> dict:
    """Coverage after 1 .. `within` layers, and the layers needed to reach from every position."""
    reachable = layers[layers != UNREACHABLE]
    by_layer = np.bincount(reachable, minlength=within + 1).cumsum() / len(layers)
    unreachable = int(len(layers) - len(reachable))
    return {
        "layers": within,
        "coverage": float(by_layer[within]),
        "coverage_by_layer": [float(c) for c in by_layer[1:within + 1]],
        "layers_to_cover_all": int(reachable.max()) if unreachable == 0 else None,
        "unreachable_positions": unreachable,
    }
