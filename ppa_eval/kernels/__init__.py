"""Triton kernels for power-based partial attention.

The attended distances form one fixed set S for every query (window plus power positions). Decode
gathers the key rows at those distances. Prefill multiplies the near distances, where S is dense,
as masked tiles on tensor cores and gathers the far ones, where S is sparse; a cost model measured
on the GPU picks where one stops and the other starts (cost_model.py), so the gathered part costs
O(L^(1+p)) instead of O(L^2). Where FlashAttention-4 is installed (SM90), the cost model may give a
whole sequence to its CuTe-DSL kernel with the PPA mask instead (flash4.py): faster where every
tile is needed (p >= 3/4). bf16 or fp16 in, fp32 accumulation, forward only.

    ppa_attention(q, k, v, pattern, kv_start=None, seq_lens=None)  contiguous cache, decode or prefill
    ppa_attention_paged(q, k_cache, v_cache, block_table, seq_lens, pattern, max_seq_len)  paged, decode
    plan_prefill_paged(pattern, query_starts, seq_lens, requests, ...)   a step's prefill chunks, planned once
    ppa_prefill_paged(q, k_cache, v_cache, block_table, chunks)  paged, all of a step's chunks in one launch

Query t of Lq sits at cache slot seq_len - Lq + t and attends slot s <= its own iff s is at or
after the row's first real slot (kv_start, for left padding) and either (query slot - s) is in S
or s is one of the pattern's `sink` first real slots. Rows that attend no key (left-padding
queries) come out 0. runs_pattern(pattern) says whether a pattern is one the kernels implement.
"""

from ppa_eval.kernels.attention import (KernelInputError, plan_prefill_paged, ppa_attention, ppa_attention_paged,
                                        ppa_prefill_paged, runs_pattern, takes_head_dim)

__all__ = ["KernelInputError", "plan_prefill_paged", "ppa_attention", "ppa_attention_paged", "ppa_prefill_paged",
           "runs_pattern", "takes_head_dim"]
