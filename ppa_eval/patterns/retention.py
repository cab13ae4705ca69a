"""Power retention (Manifest AI; the Brumby and PowerCoder checkpoints) as a family of the run
format: how runs, manifests and tables name a retention model's attention, beside PPA's patterns.

It is not a mask: every earlier token has a weight, (scale q.k)^degree times the gates' decay, so
its pairs are the dense square (the exact quadratic form); what sets it apart is its cost, which a
state of fixed size makes constant per token (cost.py). Only retention checkpoints run it, on the
transformers engine (ppa_eval.retention); no attention kernel of ppa-eval takes it (`kernels` is
empty), and a PPA spec cannot run a retention checkpoint.

Its spec is `retention:degree=2,chunk=C,prefill=P,switch=S`:
  - degree: the power of the dot product, which sets the state's width. It is not PPA's p (the
    exponent of PPA's span): the two are unrelated, hence the other name. The released models
    and the kernels support 2 only.
  - chunk, prefill, switch: the checkpoint's cache settings (config keys chunk_size,
    prefill_chunk_size, switch_over_seq_len; 0 for none): decode folds its tail into the state
    every `chunk` tokens, and prompts longer than `switch` are prefilled `prefill` tokens at a
    time through the state. They are exact reformulations (speed and memory, not accuracy), so
    they are recorded, not swept; chunk=0 is the exact quadratic path.

Cost (cost.py's decode_flops and cache_bytes call these), per layer, d the head size, hq and hk
the query and KV heads, D = state_width(d) (9,216 at d = 128), c = chunk, t = min(L, c) the tail:
  - state path (c > 0): FLOPs per token 2·D·(d + 1)·(hq + hk) (query the state and its normaliser
    with each query head; fold each token's phi(k) v^T into it once per KV head) + 4·t·d·hq (the
    tail, exactly); bytes hk·D·(d·value bytes + 4) (state, float32 normaliser) + t·hk·(2·d·value
    bytes + 4) (tail K, V, float32 gate). Constant in L.
  - exact path (c = 0): dense attention's 4·L·d·hq FLOPs, and the K, V and gate of every token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppa_eval.patterns.base import BlockPattern, PatternError, Spelling, parse_count

ARCHITECTURE = "power-retention"
GATE_BYTES = 4  # a cached log-gate is float32
CONFIG_KEYS = {"chunk": "chunk_size", "prefill": "prefill_chunk_size", "switch": "switch_over_seq_len"}


@dataclass(frozen=True)
class PowerRetention(BlockPattern):
    degree: int = 2
    chunk: int = 0    # tokens; 0: never fold (exact quadratic decode)
    prefill: int = 0  # tokens; 0: prefill in the attention form
    switch: int = 0   # tokens; 0: the chunk size
    block = 1
    sink = 0
    kernels = frozenset()
    spellings = (Spelling("retention", {"degree": 2, "chunk": 0, "prefill": 0, "switch": 0},
                          "retention:degree=2,chunk=64,prefill=1024,switch=8192",
                          lambda degree, chunk, prefill, switch: PowerRetention(degree, chunk, prefill, switch)),)

    def __post_init__(self):
        object.__setattr__(self, "degree", parse_count(self.degree, "degree", "", minimum=1))
        if self.degree != 2:
            raise PatternError(f"retention degree {self.degree} is not supported: the released models and the "
                               "retention kernels use degree 2")
        for key in CONFIG_KEYS:
            object.__setattr__(self, key, parse_count(getattr(self, key), key, "tokens"))

    @classmethod
    def from_config(cls, config: dict) -> PowerRetention:
        """The spec of a retention checkpoint's config (its cache keys; a missing or null key is 0)."""
        return cls(2, *(config.get(key) or 0 for key in CONFIG_KEYS.values()))

    def config_entries(self) -> dict:
        """The model config keys this spec sets (0 as None)."""
        return {name: getattr(self, key) or None for key, name in CONFIG_KEYS.items()}

    def distance_table(self, n: int) -> np.ndarray:
        return np.ones(n, dtype=bool)

    def mask_parts(self, length: int, device=None) -> dict:
        def every_earlier_token(b, h, q_idx, kv_idx):
            return q_idx >= 0

        return {"every earlier token": every_earlier_token}

    def spec(self) -> str:
        return f"retention:degree={self.degree},chunk={self.chunk},prefill={self.prefill},switch={self.switch}"

    def series(self) -> str:
        return "retention"

    def sort_key(self) -> tuple:
        return (self.degree, self.chunk, self.prefill, self.switch)

    def decode_flops(self, shape, length: int) -> int:
        """Attention FLOPs of one generated token at context `length` (module docstring), all layers."""
        d, tail = shape.head_dim, length if not self.chunk else min(length, self.chunk)
        per_layer = 4 * tail * d * shape.heads
        if self.chunk:
            per_layer += 2 * state_width(d) * (d + 1) * (shape.heads + shape.kv_heads)
        return shape.layers * per_layer

    def cache_bytes(self, shape, length: int) -> int:
        """Bytes a sequence keeps for decoding at `length` tokens (module docstring), all layers."""
        d, tail = shape.head_dim, length if not self.chunk else min(length, self.chunk)
        per_layer = tail * shape.kv_heads * (2 * d * shape.value_bytes + GATE_BYTES)
        if self.chunk:
            per_layer += shape.kv_heads * state_width(d) * (d * shape.value_bytes + GATE_BYTES)
        return shape.layers * per_layer

    def fields(self) -> dict:
        return {"architecture": ARCHITECTURE, "degree": self.degree, **self.config_entries()}


def state_width(head_dim: int) -> int:
    """Rows of the state per KV head, as the retention kernels lay it out for degree 2: the d(d+1)/2
    distinct products of phi(k), in tiles of 16 x 8 (retention's compute_expanded_dim)."""
    inner, outer = 16, 8
    return (inner // outer + head_dim // outer) * (head_dim // inner) // 2 * inner * outer
