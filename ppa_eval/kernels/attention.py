"""The public entry points: check the inputs once, pick decode or prefill, launch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ppa_eval.kernels import cost_model, decode, flash4, prefill
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.patterns import BlockPattern, format_spec
from ppa_eval.patterns.base import TRITON

DECODE_MAX_QUERIES = 4  # up to this many queries per sequence go to the split decode kernel


class KernelInputError(ValueError):
    """Tensors the PPA kernels cannot take."""


def takes_head_dim(head_dim: int) -> bool:
    """Do the kernels take heads of this size? Powers of two from 16: the tiles' dot products need it."""
    return head_dim >= 16 and not head_dim & (head_dim - 1)


def _check(q, k, v, out, n_kv_heads: int):
    if q.dim() != 4:
        raise KernelInputError(f"q must be [batch, heads, queries, head_dim], got shape {tuple(q.shape)}")
    if k.shape != v.shape:
        raise KernelInputError(f"k and v must have one shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.dtype not in (torch.bfloat16, torch.float16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise KernelInputError(f"q, k, v must all be bfloat16 or float16, got {q.dtype}, {k.dtype}, {v.dtype}")
    head_dim = q.shape[3]
    if k.shape[-1] != head_dim or not takes_head_dim(head_dim):
        raise KernelInputError(f"head_dim must be a power of two >= 16 shared by q, k, v; got {head_dim} and {k.shape[-1]}")
    if q.shape[1] % n_kv_heads:
        raise KernelInputError(f"{q.shape[1]} query heads are not a multiple of {n_kv_heads} KV heads")
    if out is not None and out.shape != q.shape:
        raise KernelInputError(f"out must have q's shape {tuple(q.shape)}, got {tuple(out.shape)}")
    for name, x in (("q", q), ("k", k), ("v", v), ("out", out)):
        if x is not None and x.stride(-1) != 1:
            raise KernelInputError(f"{name} must be contiguous in head_dim (stride 1); call .contiguous() first")


def runs_pattern(pattern: BlockPattern) -> bool:
    """Do these kernels implement `pattern`? Its family says so (`kernels`): every PPA (sliding
    window and full included, with or without sinks); not PowerAttention, whose block-granular
    distances are no token distance list."""
    return TRITON in pattern.kernels


def _tables(pattern: BlockPattern, kv_len: int, device):
    if not runs_pattern(pattern):
        raise KernelInputError(f"the PPA kernels do not implement {format_spec(pattern)}; "
                               "use flex attention (block-sparse) or sdpa for it")
    tables = offset_tables(pattern, kv_len, device)
    if tables.host_counts[0] == 0 and tables.sink == 0:  # p = 0, w = 0: the empty set
        raise KernelInputError(f"pattern {pattern} does not attend any key; use window >= 1, power > 0 or sink > 0")
    return tables


def ppa_attention(q, k, v, pattern: BlockPattern, *, kv_start=None, seq_lens=None, scale: float | None = None,
                  out=None):
    """PPA attention of q [B, Hq, Lq, D] over a contiguous cache k, v [B, Hkv, Lk, D] (Lq <= Lk).

    kv_start: int32 [B], the first real slot of each row (left padding), or None for 0.
    seq_lens: int32 [B] on the device, the slots filled in each row, the queries being the last Lq
    of them (a static cache, whose lengths a CUDA graph cannot pass as numbers); decode only
    (Lq <= DECODE_MAX_QUERIES). None: all Lk slots are filled.
    Returns out [B, Hq, Lq, D] (any strides: pass a transposed view to write another layout).
    """
    _check(q, k, v, out, k.shape[1] if k.dim() == 4 else 1)
    if k.dim() != 4 or k.shape[0] != q.shape[0]:
        raise KernelInputError(f"k must be [batch, kv_heads, keys, head_dim] with q's batch, got {tuple(k.shape)}")
    n_queries, kv_len = q.shape[2], k.shape[2]
    if n_queries > kv_len:
        raise KernelInputError(f"{n_queries} queries but only {kv_len} cache slots; the queries must be in the cache")
    for name, lengths in (("kv_start", kv_start), ("seq_lens", seq_lens)):
        if lengths is not None and (lengths.dtype != torch.int32 or lengths.shape != (q.shape[0],)):
            raise KernelInputError(f"{name} must be int32 [batch], got {lengths.dtype} {tuple(lengths.shape)}")
    if seq_lens is not None and n_queries > DECODE_MAX_QUERIES:
        raise KernelInputError(f"seq_lens is for decode (up to {DECODE_MAX_QUERIES} queries per row), got "
                               f"{n_queries} queries; pass the filled slots k[:, :, :seq_len] instead")
    out = torch.empty_like(q) if out is None else out
    scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else scale
    tables = _tables(pattern, kv_len, q.device)
    if n_queries <= DECODE_MAX_QUERIES:
        return decode.decode(q, k, v, out, tables, scale, max_reach=kv_len - 1, kv_len=kv_len, kv_start=kv_start,
                             seq_lens=seq_lens)
    if n_queries == kv_len and kv_start is None and tables.host_counts[kv_len - 1] == kv_len:
        # Every distance the sequence has is attended (p = 1, or a window as long as the sequence):
        # plain causal attention, which torch's dense kernels (cuDNN, FlashAttention) compute
        # exactly and faster than the masked tiles (results/bench/attention.md, kernel_tiles.md).
        gqa = q.shape[1] != k.shape[1]
        out.copy_(F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa))
        return out
    lists = flash4_lists(q, k, pattern, kv_start)
    if lists is not None:
        return flash4.prefill(q, k, v, out, lists, scale)
    return prefill.prefill(q, k, v, out, tables, scale, kv_start=kv_start)


def flash4_lists(q, k, pattern: BlockPattern, kv_start=None):
    """FlashAttention-4's tile lists where ppa_attention gives this call to it (flash4.py): a whole
    sequence without padding, FA4 runs here, and the cost model finds it cheaper; else None."""
    kv_len = k.shape[2]
    if q.shape[2] != kv_len or kv_start is not None:
        return None
    tables = offset_tables(pattern, kv_len, q.device)
    if not flash4.runs(q, tables):
        return None
    lists = flash4.tile_lists(tables, kv_len)
    shape = prefill.TileShape()
    cheaper = cost_model.flash4_is_cheaper(tables, lists.visited, len(lists.masked_counts), kv_len,
                                           (shape.block_m, shape.block_n), *q.shape[:2], k.shape[1],
                                           cost_model.costs_for(q.device))
    return lists if cheaper else None


def _check_paged(q, k_cache, v_cache, out, block_table, sequences: int):
    _check(q, k_cache, v_cache, out, k_cache.shape[2] if k_cache.dim() == 4 else 1)
    if k_cache.dim() != 4:
        raise KernelInputError(f"k_cache must be [blocks, page_size, kv_heads, head_dim], got {tuple(k_cache.shape)}")
    if block_table.dtype != torch.int32 or block_table.dim() != 2 or block_table.shape[0] != sequences:
        raise KernelInputError(f"block_table must be int32 [{sequences}, max_pages], one row per sequence, "
                               f"got {block_table.dtype} {tuple(block_table.shape)}")


def ppa_attention_paged(q, k_cache, v_cache, block_table, seq_lens, pattern: BlockPattern, *,
                        max_seq_len: int, scale: float | None = None, out=None):
    """PPA decode of q [B, Hq, Lq <= 4, D] over a paged cache k_cache, v_cache [blocks, page, Hkv, D].

    block_table: int32 [B, max_blocks] (logical page -> physical block); seq_lens: int32 [B], slots
    filled per row including the Lq queries; max_seq_len: an upper bound of seq_lens (no sync).
    """
    _check_paged(q, k_cache, v_cache, out, block_table, q.shape[0])
    if q.shape[2] > DECODE_MAX_QUERIES:
        raise KernelInputError(f"the paged kernel decodes up to {DECODE_MAX_QUERIES} queries per row, got {q.shape[2]}; "
                               "use ppa_prefill_paged for a prefill chunk")
    if seq_lens.dtype != torch.int32 or seq_lens.shape != (q.shape[0],):
        raise KernelInputError(f"seq_lens must be int32 [batch], got {seq_lens.dtype} {tuple(seq_lens.shape)}")
    out = torch.empty_like(q) if out is None else out
    scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else scale
    tables = _tables(pattern, max_seq_len, q.device)
    return decode.decode(q, k_cache, v_cache, out, tables, scale, max_reach=max_seq_len - 1,
                         block_table=block_table, seq_lens=seq_lens)


def plan_prefill_paged(pattern: BlockPattern, query_starts: list[int], seq_lens: list[int], requests: range,
                       n_q_heads: int, n_kv_heads: int, device) -> prefill.Chunks | None:
    """Plan, once per step for every layer, the prefill chunks of `requests` for ppa_prefill_paged:
    request r's queries are rows query_starts[r] .. query_starts[r + 1] - 1 of the step's query
    tensor, the last ones of its seq_lens[r] tokens (host lists, as vLLM's metadata has them).
    None when those requests have no queries."""
    if query_starts[requests.stop] == query_starts[requests.start]:
        return None  # no queries (vLLM pads a batch of decodes for its CUDA graph with empty requests)
    if any(query_starts[r + 1] - query_starts[r] > seq_lens[r] for r in requests):
        raise KernelInputError("a chunk has more queries than its sequence has tokens; the queries must be in the cache")
    return prefill.plan_chunks(_tables(pattern, max(seq_lens[r] for r in requests), device), query_starts, seq_lens,
                               requests, n_q_heads, n_kv_heads, device)


def ppa_prefill_paged(q, k_cache, v_cache, block_table, chunks: prefill.Chunks, *, scale: float | None = None,
                      out=None):
    """PPA prefill of a step's chunks straight from a paged cache k_cache, v_cache [blocks, page, Hkv, D],
    in one launch per kernel: q [tokens, Hq, D] are the step's query rows, chunks says whose they
    are (plan_prefill_paged), block_table int32 [requests, max_pages] names each request's pages.
    Writes the planned rows of out (q's shape; other rows are left alone) and returns it."""
    if q.dim() != 3 or q.shape[0] != chunks.query_starts[-1]:
        raise KernelInputError(f"q must be the step's {chunks.query_starts[-1]} query rows [tokens, heads, head_dim], "
                               f"got shape {tuple(q.shape)}")
    out = torch.empty_like(q) if out is None else out
    scale = 1.0 / math.sqrt(q.shape[2]) if scale is None else scale
    # A later layer of the step, laid out as an earlier one, was checked with it.
    if not prefill.replay_chunks(q, k_cache, v_cache, out, block_table, chunks, scale):
        _check_paged(q.transpose(0, 1)[None], k_cache, v_cache, out.transpose(0, 1)[None], block_table,
                     len(chunks.query_starts) - 1)
        prefill.prefill_chunks(q, k_cache, v_cache, out, block_table, chunks, scale)
    return out
