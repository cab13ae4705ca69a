"""A float64 dense masked reference for checking the kernels, built from the definition alone.

It shares nothing with the kernels or with ppa_eval.pattern: the attended distances come from the
paper's rule evaluated in exact integers, and attention is the textbook softmax over a full
boolean mask, in float64, a block of queries at a time.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch


def floor_power(j: int, p: Fraction) -> int:
    """floor(j^p) exactly: the largest g with g^den <= j^num (0^0 = 1)."""
    if j == 0:
        return 1 if p == 0 else 0
    num, den = p.numerator, p.denominator
    target = j**num
    g = int(j ** float(p))
    while g**den > target:
        g -= 1
    while (g + 1) ** den <= target:
        g += 1
    return g


def attended_distances(power: Fraction, window: int, length: int) -> np.ndarray:
    """Boolean [length]: distance d = j - 1 attended iff j <= w or floor(j^p) - floor((j-1)^p) == 1."""
    power = Fraction(power)
    floors = [floor_power(j, power) for j in range(length + 1)]
    return np.array([j <= window or floors[j] - floors[j - 1] == 1 for j in range(1, length + 1)])


def masked_attention(q, k, v, attended: np.ndarray, *, kv_start=None, sink: int = 0, scale: float,
                     query_block: int = 256):
    """float64 attention of q [B, Hq, Lq, D] over k, v [B, Hkv, Lk, D] (GQA by head // group).

    Query t sits at slot Lk - Lq + t; it sees slot s <= slot iff s >= kv_start[b] and either
    attended[slot - s] or s is one of the row's first `sink` real slots (s < kv_start[b] + sink:
    sinks count tokens, not slots). Rows that see no key are 0.
    """
    batch, n_q_heads, n_queries, head_dim = q.shape
    n_kv_heads, kv_len = k.shape[1], k.shape[2]
    group = n_q_heads // n_kv_heads
    table = torch.as_tensor(attended, device=q.device)
    key_slot = torch.arange(kv_len, device=q.device)
    out = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    for b in range(batch):
        k64, v64 = k[b].double(), v[b].double()  # [Hkv, Lk, D]
        start = 0 if kv_start is None else int(kv_start[b])
        for t0 in range(0, n_queries, query_block):
            t = torch.arange(t0, min(t0 + query_block, n_queries), device=q.device)
            distance = (kv_len - n_queries + t)[:, None] - key_slot[None, :]
            is_sink = key_slot < start + sink
            allowed = (distance >= 0) & (table[distance.clamp(0, len(attended) - 1)] | is_sink) & (key_slot >= start)
            q64 = q[b, :, t].double().view(n_kv_heads, group, len(t), head_dim)
            scores = torch.einsum("hgtd,hsd->hgts", q64, k64) * scale
            scores = scores.masked_fill(~allowed, float("-inf"))
            weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows with no key: NaN -> 0
            out[b, :, t] = torch.einsum("hgts,hsd->hgtd", weights, v64).reshape(n_q_heads, len(t), head_dim)
    return out


def relative_error(out, ref) -> float:
    """||out - ref|| / ||ref|| in float64; NaN anywhere in out gives NaN."""
    diff = out.double() - ref
    return float(diff.norm() / ref.norm())
