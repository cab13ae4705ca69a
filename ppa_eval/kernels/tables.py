"""The PPA pattern as the small integer tables the kernels read, and its sink count.

Every query attends the same set S of distances d = query slot - key slot (window plus power
positions), so a kernel needs no mask function: the gathering kernels walk a sorted list of
distances and load the key rows at those distances (the masked tiles take mask bits built from
the host copy of S, tiles.row_bits; FlashAttention-4 takes a table of it, flash4.tile_lists). A
query whose first valid key is `reach` slots back attends the first counts[reach] entries of that
list, so a kernel learns its loop bound with one load instead of a search. The sinks are no distance: the kernels walk them separately (sinks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ppa_eval.patterns import PowerPattern


@dataclass(frozen=True, eq=False)
class OffsetTables:
    distances: torch.Tensor     # int32 [n]: attended d = j - 1 in increasing order, all below `length`
    counts: torch.Tensor        # int32 [length]: counts[r] = number of attended d <= r
    host_counts: np.ndarray     # the same counts on the host, for sizing launches without a sync
    host_attended: np.ndarray   # bool [length]: is distance d attended, on the host (for building masks)
    window: int                 # distances[:window] are exactly 0 .. window-1 (the dense band)
    sink: int                   # the first `sink` real slots of a row are attended by every query

    @property
    def length(self) -> int:
        """The tables answer for reaches 0 .. length-1."""
        return len(self.host_counts)


def table_length(needed: int) -> int:
    """Tables are built for a power of two >= needed, so the decode steps of a generation share one."""
    return 1 << max(needed - 1, 1).bit_length()


@lru_cache(maxsize=32)
def _offset_tables(pattern: PowerPattern, length: int, device: str) -> OffsetTables:
    attended = pattern.distance_table(length)
    counts = np.cumsum(attended).astype(np.int32)
    return OffsetTables(
        distances=torch.as_tensor(np.flatnonzero(attended).astype(np.int32), device=device),
        counts=torch.as_tensor(counts, device=device),
        host_counts=counts,
        host_attended=attended,
        window=min(pattern.window, length),
        sink=pattern.sink,
    )


def offset_tables(pattern: PowerPattern, needed: int, device) -> OffsetTables:
    """Tables that answer for every reach below `needed`, on `device` (cached)."""
    return _offset_tables(pattern, table_length(needed), str(torch.device(device)))
