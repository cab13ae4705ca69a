"""PowerAttention (Chen et al. 2025, arXiv 2503.03588): attention at power-of-two block distances.

Blocks of B tokens; query i in block a = i // B, key k <= i in block b = k // B, d = a - b:

    attend iff  d < W  (a window of W blocks, the query's own block included)
            or  d > 0 is a power of two  (d & (d - 1) == 0)
            or  b < S  (S sink blocks)

Each block attends O(log L) blocks, and the distances 1, 2, 4, ... let information hop any
distance r in popcount(r) <= log2(r) + 1 layers, so the receptive field grows exponentially with
depth (the paper's point). block = 1 is the token form.

Its spec is `powerattention:block=B,window=W,sink=S`. Defaults, `powerattention:block=64,window=1,sink=1`,
and why:
  - block = 64: the paper used 256-token blocks at 32k (Qwen2-7B), i.e. 128 blocks. Our models
    stop at 8k (the embedded model's max_position_embeddings is 8192), where 64-token blocks give
    the same 128 blocks; 64 is also PPA's window, so both patterns see the same local band. For
    flex-attention speed at 32k and beyond, give block=128 or more (flex's tile is 128 x 128).
  - window = 1: windows of 1, 2 and 3 blocks are the same pattern, because distances 1 and 2 are
    powers of two; window = 1 already means "own block and the previous one". The first window
    that adds anything is 4 (distance 3), so the window is a coarse knob.
  - sink = 1: StreamingLLM found that a few initial tokens absorb attention that has nowhere else
    to go; the first block holds them, and a block-granular sink keeps the pattern block-sparse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppa_eval.patterns.base import BlockPattern, Knob, Spelling, parse_count, sink_part


@dataclass(frozen=True)
class PowerAttention(BlockPattern):
    block: int = 64
    window: int = 1  # blocks, the query's own included; >= 1 so that every query sees itself
    sink: int = 1    # blocks
    spellings = (Spelling("powerattention", {"block": 64, "window": 1, "sink": 1},
                          "powerattention:block=64,window=1,sink=1",
                          lambda block, window, sink: PowerAttention(block, window, sink), Knob("window", minimum=1)),)

    def __post_init__(self):
        object.__setattr__(self, "block", parse_count(self.block, "block", "tokens", minimum=1))
        object.__setattr__(self, "window", parse_count(self.window, "window", "blocks", minimum=1))
        object.__setattr__(self, "sink", parse_count(self.sink, "sink", "blocks"))

    def distance_table(self, n: int) -> np.ndarray:
        d = np.arange(n, dtype=np.int64)
        return (d < self.window) | ((d > 0) & ((d & (d - 1)) == 0))

    def mask_parts(self, length: int, device=None) -> dict:
        block, window = self.block, self.window

        def in_window(b, h, q_idx, kv_idx):
            return q_idx // block - kv_idx // block < window

        def power_of_two(b, h, q_idx, kv_idx):
            d = q_idx // block - kv_idx // block
            return (d > 0) & ((d & (d - 1)) == 0)

        return {"window": in_window, "power of two": power_of_two} | sink_part(self.sink * block)

    def spec(self) -> str:
        return f"powerattention:block={self.block},window={self.window},sink={self.sink}"

    def series(self) -> str:
        """One curve whatever the sink: the family's default has one."""
        return "powerattention"

    def sort_key(self) -> tuple:
        return (self.block, self.window, self.sink)
