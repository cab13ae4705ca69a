"""A dilated sliding window: the query at position i attends the key k <= i iff the distance
d = i - k is a multiple of `stride` below `w * stride` (w keys, `stride` apart, the query itself
the first), or k < sink. stride = 1 is a sliding window of w tokens.

Spec: `dilated:stride=S,w=W[,sink=K]` (defaults 2, 64, 0); match_cost may choose w.
"""

from dataclasses import dataclass

import numpy as np

from ppa_eval.patterns import BlockPattern, Knob, Spelling, parse_count, sink_part


@dataclass(frozen=True)
class Dilated(BlockPattern):
    stride: int = 2
    w: int = 64
    sink: int = 0
    block = 1  # token level
    spellings = (Spelling("dilated", {"stride": 2, "w": 64, "sink": 0}, "dilated:stride=2,w=64",
                          lambda stride, w, sink: Dilated(stride, w, sink), Knob("w", minimum=1)),)

    def __post_init__(self):
        object.__setattr__(self, "stride", parse_count(self.stride, "stride", "tokens", minimum=1))
        object.__setattr__(self, "w", parse_count(self.w, "w", "keys", minimum=1))
        object.__setattr__(self, "sink", parse_count(self.sink, "sink", "tokens"))

    def distance_table(self, n: int) -> np.ndarray:
        d = np.arange(n)
        return (d % self.stride == 0) & (d < self.w * self.stride)

    def mask_parts(self, length: int, device=None) -> dict:
        stride, reach = self.stride, self.w * self.stride

        def dilated(b, h, q_idx, kv_idx):
            d = q_idx - kv_idx
            return (d % stride == 0) & (d < reach)

        return {"dilated": dilated} | sink_part(self.sink)

    def spec(self) -> str:
        return f"dilated:stride={self.stride},w={self.w}" + (f",sink={self.sink}" if self.sink else "")
