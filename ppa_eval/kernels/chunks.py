"""Many sequences' query chunks in one launch: the program table (vLLM's prefill chunks).

A vLLM step mixes requests, each with its own chunk of queries (the last n_queries of its seq_len
tokens) at its own rows of the step's query tensor [tokens, heads, head_dim]. Launched once per
chunk, the prefill costs the host two Triton launches per chunk and layer, more than the GPU time
of a short chunk (results/bench/host_costs.md). Launched once per step instead, each program looks
up what it owns in a table that the host builds once per step for every layer: the request (its
block-table row), the first query it owns within the chunk, the chunk's first row in the query
tensor, the chunk's query count and the cache slot of its first query.

Without a table (a contiguous cache, every sequence with the same n_queries and first_slot), the
program's grid position says the same: sequence program_id(1) // n_heads, queries from
program_id(0) * BLOCK, rows of its own batch entry.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl


def program_table(query_starts: list[int], seq_lens: list[int], requests: range, block: int,
                  device) -> torch.Tensor:
    """int32 [programs, 5]: one program per `block` consecutive queries of each request's chunk,
    its columns (request, first query, first row, n_queries, first_slot) as program_queries reads them.
    Request r's queries are rows query_starts[r] .. query_starts[r + 1] - 1, the last ones of its
    seq_lens[r] tokens; requests without queries get no program."""
    r = np.arange(requests.start, requests.stop)
    starts = np.asarray(query_starts, dtype=np.int64)
    first_row, n_queries = starts[r], starts[r + 1] - starts[r]
    first_slot = np.asarray(seq_lens, dtype=np.int64)[r] - n_queries
    programs = -(-n_queries // block)
    owner = np.repeat(np.arange(len(r)), programs)
    first_query = (np.arange(len(owner)) - np.repeat(np.cumsum(programs) - programs, programs)) * block
    table = np.stack([r[owner], first_query, first_row[owner], n_queries[owner], first_slot[owner]], axis=1)
    return torch.from_numpy(table.astype(np.int32)).to(device)


@triton.jit
def program_queries(Programs, n_heads, n_queries, first_slot, BLOCK: tl.constexpr):
    """What this program computes: (b, head, q_batch, first_row, first_query, n_queries, first_slot).
    b: the cache's sequence (or block-table row); head: the head index program_id(1) carries (query
    or KV head, n_heads of them); the program owns the chunk's queries first_query + 0 .. BLOCK - 1
    (those below n_queries); the chunk's query t sits at row first_row + t of batch entry q_batch
    (int64) of Q, Out and the log-sum-exp, and at cache slot first_slot + t."""
    if Programs is None:
        b = tl.program_id(1) // n_heads
        head, q_batch, first_row = tl.program_id(1) % n_heads, b.to(tl.int64), 0
        first_query = tl.program_id(0) * BLOCK
    else:
        entry = Programs + tl.program_id(0) * 5  # program_table's row
        b, head, q_batch = tl.load(entry), tl.program_id(1), tl.full([], 0, tl.int64)
        first_query, first_row = tl.load(entry + 1), tl.load(entry + 2)
        n_queries, first_slot = tl.load(entry + 3), tl.load(entry + 4)
    return b, head, q_batch, first_row, first_query, n_queries, first_slot
