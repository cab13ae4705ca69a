"""Whole-sequence PPA prefill on FlashAttention-4's CuTe-DSL kernel, where it is installed.

Why: from p = 3/4 on, every 128 x 128 tile of a 2k-32k sequence holds attended pairs (the gaps
between attended distances stay below 20 slots), so any tile kernel does dense attention's whole
work plus the mask, and what decides is how fast its dense walk is. Triton 3.6's own causal walk
is slower than cuDNN's, and our masked tiles slower still; FA4's SM90 kernel runs causal attention
at about cuDNN's speed, and with the PPA mask (below) stays close to it (bench/tile_limits.py,
bench/attention.py; results/bench/tile_limits_h200.txt, results/bench/attention.md).

How: FA4 takes the tiles to visit as block-sparse lists: for each query tile, the key tiles at or
below the diagonal that hold an attended pair (tile_lists). It takes a mask as a `mask_mod` that it
calls on every score of a visited tile, and one table load per score made it clearly slower than its
causal kernel. So FA4's mask step is replaced for our mask_mod only (_fa4): SM90's MMA hands each thread
32 scores per row and tile, at fixed column offsets (ROW_COLUMNS), so the mask of one row is one
32-bit word of a table indexed by the distance to the thread's first column (row_words), applied
with FA4's own register-predicate step, as its causal mask is. The cost model weighs this kernel
against the Triton plan per call (cost_model.py); sinks, left padding and chunks (fewer queries
than keys) stay with the Triton kernels.

FA4 is optional: the `flash4` extra pins the release this module was tested with and its CuTe DSL
(docs/kernels.md has the command). Its kernel compiles at first use (some 8 s per process). This
module calls FA4's private forward, so it runs only RELEASE; any other release, or an install that
does not import (the DSL's Python half, nvidia-cutlass-dsl-libs-core, missing, say), leaves
prefill to the Triton kernels with a warning, and `status()` says which path prefill takes and why.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata

import numpy as np
import torch

from ppa_eval.kernels.tables import OffsetTables

RELEASE = "4.0.0b36"
# FA4's tile on SM90 for head sizes up to 128, passed explicitly so that the lists match it. A
# visited tile is at or below the diagonal, so its distances d = q - k are >= -(TILE - 1): the
# mask reads the table at d + TILE.
TILE = 128
# The columns of a row's 32 scores that one thread holds after SM90's MMA, from its first one:
# pairs 8 apart (the accumulator layout of wgmma; FA4's sm90_col_to_r2p_idx assumes the same).
ROW_COLUMNS = np.array([(i // 2) * 8 + i % 2 for i in range(32)])
WORD_SPAN = 128  # the columns that one word's 32 scores span: the next 32 of a row start this far on


@dataclass(frozen=True, eq=False)
class TileLists:
    """The tiles of TILE queries x TILE keys that one sequence's prefill visits, and its mask table.
    A visited tile is full (every pair attended: no mask to apply) or masked."""
    row_words: torch.Tensor      # int32 [n * tile + tile]: bit i of entry d + tile: is d - ROW_COLUMNS[i] attended
    masked_counts: torch.Tensor  # int32 [n]: how many masked key tiles query tile i visits
    masked: torch.Tensor         # int32 [n, n]: their indices, ascending, in the first masked_counts[i] entries
    full_counts: torch.Tensor    # the same for the full tiles
    full: torch.Tensor
    visited: int                 # tiles visited in all (the cost model's unit)


@lru_cache(maxsize=32)  # OffsetTables hash by identity and are cached themselves
def tile_lists(tables: OffsetTables, kv_len: int, tile: int = TILE) -> TileLists:
    """Tile (i, j) is visited iff some query q < kv_len of tile i attends some key k <= q of tile j,
    and full iff every key of tile j precedes every query of tile i and all their distances are attended."""
    n = -(-kv_len // tile)
    counts = tables.host_counts[:kv_len].astype(np.int64)
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    lo = np.maximum(i * tile - (j * tile + tile - 1), 0)          # the tile's nearest distance
    hi = np.minimum(i * tile + tile - 1, kv_len - 1) - j * tile    # and its farthest
    in_range = hi >= lo
    lo, hi = np.clip(lo, 0, kv_len - 1), np.clip(hi, 0, kv_len - 1)
    hits = counts[hi] - np.where(lo > 0, counts[lo - 1], 0)
    visited = in_range & (hits > 0)
    full = visited & (j < i) & (hits == hi - lo + 1)
    device = tables.counts.device

    def listed(chosen):
        return (torch.as_tensor(chosen.sum(1).astype(np.int32), device=device),
                torch.as_tensor(np.argsort(~chosen, axis=1, kind="stable").astype(np.int32), device=device))
    return TileLists(torch.as_tensor(row_words(tables.host_attended[:kv_len], n * tile + tile, tile), device=device),
                     *listed(visited & ~full), *listed(full), visited=int(visited.sum()))


def row_words(attended: np.ndarray, size: int, offset: int) -> np.ndarray:
    """int32 [size]: bit i of entry d + offset says whether distance d - ROW_COLUMNS[i] is attended
    (negative distances and those past `attended` are not). One thread's scores of one row, whose
    first column is d keys before the query, are masked by the entry at d + offset; bit 0 alone is
    the plain distance table."""
    shifted = np.zeros(size, dtype=np.uint32)
    shifted[offset:offset + len(attended)] = attended
    words = np.zeros(size, dtype=np.uint32)
    for bit, column in enumerate(ROW_COLUMNS):
        words[column:] |= shifted[:size - column] << np.uint32(bit)
    return words.view(np.int32)


INSTALL = "pip install 'ppa-eval[flash4]'"  # docs/kernels.md: the pins, and the command without ppa-eval's own wheel


@dataclass(frozen=True)
class Loaded:
    """What importing FA4 gave: its kernels, or None and why not."""
    kernels: tuple | None  # (FA4's forward, its block-sparse lists type, the PPA mask_mod)
    reason: str            # why FA4 cannot run, when kernels is None


@lru_cache(maxsize=1)
def _fa4() -> Loaded:
    """FA4 at RELEASE, imported once. An install that is there but cannot run warns once: whoever
    installed it meant prefill to use it."""
    try:
        installed = metadata.version("flash-attn-4")
    except metadata.PackageNotFoundError:
        return Loaded(None, f"flash-attn-4 is not installed ({INSTALL} adds it)")
    if installed != RELEASE:
        reason = (f"flash-attn-4 {installed} is installed, but ppa-eval calls FlashAttention-4's private forward and "
                  f"runs it only at {RELEASE} ({INSTALL})")
    else:
        try:
            return Loaded(_import_fa4(), "")
        except Exception as error:  # ImportError, or the CuTe DSL's own RuntimeError about its CUDA libraries
            reason = (f"flash-attn-4 {RELEASE} is installed but does not import ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}); reinstall with {INSTALL}")
    warnings.warn(f"{reason}; prefill uses the Triton kernels", stacklevel=3)
    return Loaded(None, reason)


def _import_fa4() -> tuple:
    """FA4's forward, its block-sparse lists type and the PPA mask_mod. Installs the row-word mask
    step in FA4's AttentionMask for that mask_mod (the module docstring)."""
    import cutlass
    import cutlass.cute as cute
    from cutlass import Uint32, const_expr
    from flash_attn.cute import utils
    from flash_attn.cute.block_sparsity import BlockSparseTensorsTorch
    from flash_attn.cute.interface import _flash_attn_fwd
    from flash_attn.cute.mask import AttentionMask, mask_r2p_lambda
    from quack import layout_utils

    @cute.jit
    def attended_mask(batch, head, q_idx, kv_idx, seqlen_info, aux_tensors):
        """FA4's per-score form of the mask (bit 0 of the row words), for layouts the row words do not fit."""
        word = utils.scalar_to_ssa(aux_tensors[0][q_idx[0] - kv_idx[0] + TILE], cutlass.Int32)
        return (word & utils.scalar_to_ssa(1, cutlass.Int32)) != utils.scalar_to_ssa(0, cutlass.Int32)

    stock_apply_mask = AttentionMask.apply_mask

    @cute.jit
    def apply_mask(self, acc_S: cute.Tensor, batch_idx: cutlass.Int32, head_idx: cutlass.Int32, m_block: cutlass.Int32,
                   n_block: cutlass.Int32, thr_mma: cute.TiledMma, mask_seqlen: cutlass.Constexpr[bool],
                   mask_causal: cutlass.Constexpr[bool], mask_local: cutlass.Constexpr[bool] = False,
                   mask_mod: cutlass.Constexpr = None, aux_data=None, fastdiv_mods=(None, None)):
        if const_expr(mask_mod is not attended_mask or self.swap_AB or self.qhead_per_kvhead_packgqa != 1):
            stock_apply_mask(self, acc_S, batch_idx, head_idx, m_block, n_block, thr_mma, mask_seqlen, mask_causal,
                             mask_local, mask_mod, aux_data, fastdiv_mods)
        else:
            # No seqlen step: a key past the sequence is after every real query (a negative distance),
            # and the rows past it are never written.
            acc_S_mn = layout_utils.reshape_acc_to_mn(acc_S)
            coords = layout_utils.reshape_acc_to_mn(thr_mma.partition_C(cute.make_identity_tensor((self.tile_m, self.tile_n))))
            first_column = n_block * self.tile_n + coords[0][1] - TILE  # TILE: the table's offset
            words = aux_data.tensors[0]
            for r in cutlass.range_constexpr(cute.size(coords.shape[0])):
                query = coords[r, 0][0] + m_block * self.tile_m
                mask_r2p_lambda(acc_S_mn[r, None], lambda s: Uint32(words[query - first_column - WORD_SPAN * s]),
                                rank1=True)

    AttentionMask.apply_mask = apply_mask
    return _flash_attn_fwd, BlockSparseTensorsTorch, attended_mask


def status(device) -> str:
    """Which path whole-sequence PPA prefill takes on `device`, and why: one line for the user."""
    device = torch.device(device)
    if device.type != "cuda":
        return "the Triton kernels (FlashAttention-4 needs an SM90 GPU)"
    gpu, (major, minor) = torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)
    if major != 9:
        return f"the Triton kernels (FlashAttention-4 runs on SM90 GPUs, H100 and H200; {gpu} is SM{major}{minor})"
    loaded = _fa4()
    if loaded.kernels is None:
        return f"the Triton kernels ({loaded.reason})"
    return (f"FlashAttention-4 {RELEASE} on {gpu} for whole sequences without sinks or padding where the cost "
            "model finds it cheaper, else the Triton kernels")


def runs(q, tables: OffsetTables) -> bool:
    """Can FA4 prefill this sequence here: FA4 at RELEASE, an SM90 GPU, head size <= TILE, no sinks."""
    return (q.is_cuda and tables.sink == 0 and q.shape[3] <= TILE
            and torch.cuda.get_device_capability(q.device)[0] == 9 and _fa4().kernels is not None)


def prefill(q, k, v, out, lists: TileLists, scale: float):
    """PPA of q, out [B, Hq, L, D] over k, v [B, Hkv, L, D]: one whole sequence per row, no padding."""
    forward, BlockSparseTensors, attended_mask = _fa4().kernels
    batch, n_q_heads, _, _ = q.shape
    per_head = [x.expand(batch, n_q_heads, *x.shape) for x in (lists.masked_counts, lists.masked, lists.full_counts,
                                                             lists.full)]
    sparse = BlockSparseTensors(*per_head, block_size=(TILE, TILE))
    # FA4 takes [B, L, H, D]: the transposed views, whose strides it reads as they are.
    forward(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale, tile_mn=(TILE, TILE),
            mask_mod=attended_mask, block_sparse_tensors=sparse, aux_tensors=[lists.row_words],
            out=out.transpose(1, 2))
    return out
