"""Attention patterns as transformers attention implementations: "ppa_sdpa" (exact boolean mask,
any device), "ppa_flex" (flex attention with the pattern's block mask), both for every family of
ppa_eval.patterns, and "ppa_kernel" (the Triton kernels, GPU, PPA with or without sinks; at the end
of this file).

transformers builds one mask per forward pass from `config._attn_implementation` and hands it to
every attention layer; layers that take no mask (NemotronH's Mamba-2 mixers) never see it. We
register, for each name, both pieces:
  - a mask builder: the stock sdpa/flex builder with the pattern's mask and-ed onto whatever the model
    asked for (causal, padding). Without a registered mask builder transformers decides that no
    mask is needed and the attention runs unmasked and non-causal, silently.
  - an attention function: the stock one, behind a guard that refuses to run without a mask.

The pattern is read from the model config (`ppa_attention`, a spec string such as
"powerattention:block=64,window=1,sink=1"; or the older `ppa_power`/`ppa_window` for PPA, see
ppa_eval.compat), so the model object alone says how it attends, and a fine-tune saved from it
names its pattern; the spec is parsed once per process (parse_spec's cache). Mask functions get
absolute positions (cache offsets already added), so a mask on q_idx - kv_idx is right in cached
decode; left padding is and-ed in by the stock builders. "ppa_kernel" takes the families that
declare the Triton kernels (their `kernels`); every family runs on the other two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from torch.nn.attention.flex_attention import BlockMask
from transformers.integrations.flex_attention import (compile_friendly_flex_attention, flex_attention_forward,
                                                       get_flex_attention_lse_kwargs)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import and_masks, flex_attention_mask, sdpa_mask

from ppa_eval.compat import CONFIG_KEYS, config_entries, pattern_from_config
from ppa_eval.engines import EngineError
from ppa_eval.kernels.tables import table_length
from ppa_eval.patterns import CONFIG_KEY, BlockPattern, format_spec, mask_mod

ATTENTION_IMPLEMENTATIONS = {"sdpa": "ppa_sdpa", "flex": "ppa_flex"}


def pattern_of(config) -> BlockPattern:
    named = {key: getattr(config, key) for key in CONFIG_KEYS if getattr(config, key, None) is not None}
    pattern = pattern_from_config(named)
    if pattern is None:
        raise RuntimeError(f"pattern attention needs config.{CONFIG_KEY} (or ppa_power and ppa_window); "
                           "load the model through ppa_eval")
    return pattern


def set_pattern(config, pattern: BlockPattern) -> None:
    for key in CONFIG_KEYS:  # stale keys of another pattern must not contradict this one
        if getattr(config, key, None) is not None:
            setattr(config, key, None)
    for key, value in config_entries(pattern).items():
        setattr(config, key, value)


def _ppa_mask_function(config, q_offset, q_length, kv_offset, kv_length, device):
    # The distance table must reach the largest q_idx; round up so decode steps share one table.
    needed = max(int(q_offset) + q_length, int(kv_offset) + kv_length)
    return mask_mod(pattern_of(config), table_length(needed), str(torch.device(device)))


def _counted_from_first_real_token(mask_function, attention_mask):
    """The mask function on token positions instead of cache slots: a left-padded row's tokens
    start at its first real slot. PPA distances do not care, but sinks and block boundaries do."""
    if attention_mask is None or attention_mask.dim() != 2:
        return mask_function
    start = attention_mask.bool().int().argmax(-1)  # [B]: first real slot of each row

    def counted(batch_idx, head_idx, q_idx, kv_idx):
        first = start[batch_idx]
        return mask_function(batch_idx, head_idx, q_idx - first, kv_idx - first)

    return counted


def _ppa_mask_builder(stock_builder):
    def build(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None,
              config=None, device="cpu", attention_mask=None, **kwargs):
        pattern_mask = _counted_from_first_real_token(
            _ppa_mask_function(config, q_offset, q_length, kv_offset, kv_length, device), attention_mask)
        kwargs["allow_is_causal_skip"] = False  # a pattern mask is never plain causal
        return stock_builder(batch_size, q_length, kv_length, q_offset=q_offset, kv_offset=kv_offset,
                             mask_function=and_masks(mask_function, pattern_mask), config=config, device=device,
                             attention_mask=attention_mask, **kwargs)

    return build


def _refuse_unmasked(stock_attention):
    def attention(module, query, key, value, attention_mask, *args, **kwargs):
        if attention_mask is None:
            raise RuntimeError("PPA attention was called without a mask: the mask builder is not registered")
        return stock_attention(module, query, key, value, attention_mask, *args, **kwargs)

    return attention


def grouped_flex_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """transformers' flex attention, with the key/value heads left grouped.

    For a query-head count that is not a power of two (Nano-9B-v2's 40), transformers repeats each
    key/value head for every query head of its group: five times the cache's bytes per layer call,
    and past 2^31 elements (131k tokens x batch 8) torch inductor's kernel fails to compile
    ("Ternary expression with dynamic condition has inconsistent types int64 and int32"). Flex
    attention takes the groups itself (enable_gqa). The mask builder always hands a BlockMask;
    calls with what only the stock function handles (soft-capping, attention sinks, a position
    bias) go to it."""
    stock_only = kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None or \
        kwargs.get("position_bias") is not None
    if stock_only or not isinstance(attention_mask, BlockMask) or query.shape[1] % key.shape[1]:
        return flex_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    if kwargs.get("dropout", 0.0) > 0:
        raise ValueError("flex attention has no dropout; use the model in eval mode")
    out = compile_friendly_flex_attention(query, key, value, block_mask=attention_mask, enable_gqa=True, scale=scaling,
                                          kernel_options=kwargs.get("kernel_options"), training=module.training,
                                          **get_flex_attention_lse_kwargs(False))
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make "ppa_sdpa" and "ppa_flex" valid `attn_implementation` names (idempotent)."""
    for name, builder, attention in (
        ("ppa_sdpa", sdpa_mask, sdpa_attention_forward),
        ("ppa_flex", flex_attention_mask, grouped_flex_attention),
    ):
        AttentionMaskInterface.register(name, _ppa_mask_builder(builder))
        AttentionInterface.register(name, _refuse_unmasked(attention))


register()


# ---- "ppa_kernel": the Triton PPA kernels of ppa_eval.kernels (GPU) ---------------------------
# No mask is materialised: the kernels walk the pattern's distance list themselves. The mask
# builder hands the attention layers what the kernels need instead: the pattern, the first real
# slot of each row (left padding; with left padding the distance between two cache slots is the
# distance between their tokens, and the sinks are the first `sink` slots from there on), and how
# many slots hold tokens. It accepts only what the kernels implement: the plain causal mask of a
# cache whose last filled slots are the queries, and left padding. Two caches qualify:
#   - dynamic: every slot is filled, and lengths are host numbers;
#   - static (hf_graph.py): filled slots are counted on the device. A decode step reads them
#     there, with no sync, so a CUDA graph can replay it; a prompt syncs once for its length.

ATTENTION_IMPLEMENTATIONS["ppa"] = "ppa_kernel"


class KernelMaskError(EngineError):
    """A generation setting the ppa_kernel attention does not implement."""


@dataclass(frozen=True)
class KernelMask:
    pattern: BlockPattern
    kv_start: torch.Tensor | None  # int32 [B]: first real slot of each row; None when nothing is padded
    kv_len: int                    # the cache slots the kernels read: all of them, or a static prompt's
    seq_lens: torch.Tensor | None  # int32 [B]: filled slots per row, on the device (static-cache decode)


def _ppa_kernel_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None,
                     attention_mask=None, config=None, **kwargs):
    from transformers.masking_utils import causal_mask_function

    from ppa_eval.kernels import runs_pattern
    from ppa_eval.kernels.attention import DECODE_MAX_QUERIES

    pattern = pattern_of(config)
    if not runs_pattern(pattern):
        raise KernelMaskError(f"ppa_kernel runs PPA only (window and full included), not {format_spec(pattern)}; "
                              "use --attn-kernel sdpa (any device) or flex")
    if mask_function is not causal_mask_function:
        raise KernelMaskError("ppa_kernel implements plain causal PPA only (no packed sequences or extra masks); use --attn-kernel flex")
    # The slots holding tokens, the queries the last of them: all of a dynamic cache, the first ones
    # of a static cache, counted on the device once it holds any (a tensor offset).
    filled, seq_lens = q_offset + q_length - kv_offset, None
    if isinstance(filled, torch.Tensor) and q_length <= DECODE_MAX_QUERIES:  # decode: no sync
        filled, seq_lens = kv_length, filled.reshape(1).to(torch.int32).repeat(batch_size)
    filled = int(filled)  # a static cache's prompt syncs once here
    if filled > kv_length:
        raise KernelMaskError("ppa_kernel needs the queries to be the last filled slots of the cache (a dynamic "
                              "or static cache, not a sliding one); use --attn-kernel flex")
    kv_start = None
    if attention_mask is not None:
        real = attention_mask[:, kv_offset:kv_offset + kv_length].bool()
        kv_start = real.int().argmax(-1).to(torch.int32)  # first real slot of each row
        # The checks below wait for the GPU, which would stall every decode step; they run when a
        # prompt arrives (q_length > 1), and decode steps only append real tokens to that mask.
        if q_length > 1 and seq_lens is None:
            real = real[:, :filled]
            if real.shape[-1] != filled:
                raise KernelMaskError(f"the padding mask covers {real.shape[-1]} of {filled} cache slots")
            if not torch.equal(real, torch.arange(filled, device=real.device) >= kv_start[:, None]):
                raise KernelMaskError("ppa_kernel supports left padding only; set tokenizer.padding_side = 'left'")
            if not kv_start.any():
                kv_start = None  # nothing padded: full attention may take a dense kernel
    return KernelMask(pattern, kv_start, filled, seq_lens)


def ppa_kernel_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention: query [B, Hq, Lq, D], key/value [B, Hkv, Lk, D] -> ([B, Lq, Hq, D], None)."""
    from ppa_eval.kernels import ppa_attention

    if not isinstance(attention_mask, KernelMask):
        raise RuntimeError("ppa_kernel attention was called without its mask: the mask builder is not registered")
    if dropout:
        raise KernelMaskError("ppa_kernel is forward-only; it takes no attention dropout")
    batch, heads, n_queries, head_dim = query.shape
    out = torch.empty(batch, n_queries, heads, head_dim, dtype=query.dtype, device=query.device)
    if attention_mask.kv_len < key.shape[2]:  # a static cache's prompt: only its slots are filled
        key, value = key[:, :, :attention_mask.kv_len], value[:, :, :attention_mask.kv_len]
    ppa_attention(query, key, value, attention_mask.pattern, kv_start=attention_mask.kv_start,
                  seq_lens=attention_mask.seq_lens, scale=scaling, out=out.transpose(1, 2))
    return out, None


AttentionMaskInterface.register("ppa_kernel", _ppa_kernel_mask)
AttentionInterface.register("ppa_kernel", ppa_kernel_attention)
# ---- end of "ppa_kernel" ----------------------------------------------------------------------
