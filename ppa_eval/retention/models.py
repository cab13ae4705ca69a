"""Brumby and PowerCoder, the released power-retention models, built from transformers' own Qwen3
and StarCoder2 with every attention layer replaced by a retention layer (layer.py).

They read the published checkpoints as they are: the config keys (`model_type` brumby or
powercoder, `chunk_size`, `prefill_chunk_size`, `switch_over_seq_len`) and the weight names, which
are Qwen3's and StarCoder2's plus `self_attn.g_proj`. They exist because the published modeling
files run only on transformers 4.57 (retention.md lists how they break on 5.x, PowerCoder's
silently untied output layer among them); tests/fixtures/retention holds what those files compute,
and our models are tested against it.

  - Brumby-14B-Base: Qwen3-14B-Base (RMSNorm, q_norm/k_norm, SwiGLU) plus g_proj without bias;
    its config keeps chunk_size 64, prefill_chunk_size 1024, switch_over_seq_len 8192.
  - PowerCoder-3B: StarCoder2-3B (LayerNorm, GELU, biases, tied lm_head) plus g_proj with bias;
    its config has no chunk keys: the exact quadratic path, as its published code defaults to.

Inference only (no training paths, no dropout).
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.qwen3 import Qwen3Config, Qwen3ForCausalLM, Qwen3Model
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention
from transformers.models.starcoder2 import Starcoder2Config, Starcoder2ForCausalLM, Starcoder2Model
from transformers.models.starcoder2.modeling_starcoder2 import Starcoder2Attention

from ppa_eval.retention.layer import RetentionCache, retention_forward


@strict
class BrumbyConfig(Qwen3Config):
    model_type = "brumby"
    chunk_size: int | None = 64
    prefill_chunk_size: int | None = 1024
    switch_over_seq_len: int | None = 8192


@strict
class PowerCoderConfig(Starcoder2Config):
    model_type = "powercoder"
    chunk_size: int | None = None
    prefill_chunk_size: int | None = None
    switch_over_seq_len: int | None = None


class BrumbyAttention(Qwen3Attention):
    def __init__(self, config, layer_idx):
        super().__init__(config, layer_idx)
        self.g_proj = nn.Linear(config.hidden_size, config.num_key_value_heads, bias=config.attention_bias)

    forward = retention_forward


class PowerCoderAttention(Starcoder2Attention):
    def __init__(self, config, layer_idx):
        super().__init__(config, layer_idx)
        self.g_proj = nn.Linear(config.hidden_size, config.num_key_value_heads, bias=config.use_bias)

    forward = retention_forward


def _with_retention(model, attention_class) -> None:
    for index, layer in enumerate(model.layers):
        layer.self_attn = attention_class(model.config, index)


def _retention_model_forward(model, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                             inputs_embeds=None, use_cache=None, **kwargs) -> BaseModelOutputWithPast:
    """The base model's forward without its causal mask (retention has no mask but the padding one,
    which each layer applies to the tokens it takes), with a RetentionCache instead of a KV cache."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("give exactly one of input_ids and inputs_embeds")
    hidden_states = model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
    length = hidden_states.shape[1]
    if use_cache and past_key_values is None:
        past_key_values = RetentionCache(len(model.layers))
    if not isinstance(past_key_values, (RetentionCache, type(None))):
        raise TypeError(f"retention models keep a RetentionCache, not {type(past_key_values).__name__}")
    seen = past_key_values.seen if past_key_values is not None else 0
    if position_ids is None:
        position_ids = torch.arange(seen, seen + length, device=hidden_states.device)[None]
    padding = None if attention_mask is None or attention_mask.all() else attention_mask[:, -length:]
    position_embeddings = model.rotary_emb(hidden_states, position_ids)
    for layer in model.layers:
        hidden_states = layer(hidden_states, attention_mask=padding, position_embeddings=position_embeddings,
                              past_key_values=past_key_values)
    if past_key_values is not None:
        past_key_values.seen += length
    return BaseModelOutputWithPast(last_hidden_state=model.norm(hidden_states),
                                   past_key_values=past_key_values if use_cache else None)


class BrumbyModel(Qwen3Model):
    config_class = BrumbyConfig

    def __init__(self, config):
        super().__init__(config)
        _with_retention(self, BrumbyAttention)

    forward = _retention_model_forward


class PowerCoderModel(Starcoder2Model):
    config_class = PowerCoderConfig

    def __init__(self, config):
        super().__init__(config)
        _with_retention(self, PowerCoderAttention)

    forward = _retention_model_forward


class _RetentionGeneration:
    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs) -> None:
        """generate() decodes with a RetentionCache, never a KV cache. Its own prefill chunking is
        turned off: a Brumby checkpoint's generation config carries the model's prefill_chunk_size,
        which generate() would otherwise take for its own."""
        generation_config.prefill_chunk_size = None
        if generation_config.use_cache is not False and model_kwargs.get("past_key_values") is None:
            model_kwargs["past_key_values"] = RetentionCache(self.config.num_hidden_layers)


class BrumbyForCausalLM(_RetentionGeneration, Qwen3ForCausalLM):
    config_class = BrumbyConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = BrumbyModel(config)
        self.post_init()


class PowerCoderForCausalLM(_RetentionGeneration, Starcoder2ForCausalLM):
    config_class = PowerCoderConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = PowerCoderModel(config)
        self.post_init()


MODELS = {"brumby": (BrumbyConfig, BrumbyForCausalLM), "powercoder": (PowerCoderConfig, PowerCoderForCausalLM)}
