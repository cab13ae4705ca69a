"""The retention layer that replaces attention in Brumby and PowerCoder, and the cache it decodes
with.

A layer projects q, k, v as the model's attention did, plus one gate per KV head and token,
g = sigmoid(g_proj(x)), and hands them to power retention (reference.py says what it computes)
with RoPE applied as the base model does. The published modeling files do the same; this layer
differs in one respect, padding: a left-padding token gets k = v = 0 and gate 1 (log-gate 0), so it
has no weight for any query and decays nothing, and a padded row computes what it computes alone.
The published files ignore the attention mask, and their padded rows change (retention.md).

The cache follows Brumby's scheme, with its config keys:
  - prefill: the whole prompt at once, through the attention form, or chunk by chunk through the
    state (`prefill_chunk_size`) when the prompt is longer than `switch_over_seq_len`; the prompt's
    k, v and gates stay in the cache as the tail;
  - decode: each new token joins the tail and queries the state and the tail; once the tail holds
    `chunk_size` tokens it is folded into the state and dropped. chunk_size None never folds: the
    exact quadratic path, PowerCoder's published default.
The forms are exact reformulations of each other, so these keys change speed and memory, never
what the model computes (up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ppa_eval.errors import PPAEvalError
from ppa_eval.retention import reference

DEGREE = reference.DEGREE


class RetentionError(PPAEvalError):
    """A retention model that cannot run here (the `retention` package missing on a GPU)."""


def kernels(device: torch.device):
    """The module with power_retention and power_retention_inference for tensors on `device`: the
    retention package's Triton kernels on a GPU, our PyTorch reference elsewhere (the Triton kernels
    have no CPU driver)."""
    if device.type != "cuda":
        return reference
    try:
        import retention
    except ImportError as error:
        raise RetentionError(f"retention models need the retention package on a GPU ({error}); "
                             "pip install 'ppa-eval[retention]'") from None
    return retention


def kernel_name(device: str) -> str:
    """What the manifest's attn_kernel records for a retention run on `device`."""
    return "retention-triton" if torch.device(device).type == "cuda" else "retention-reference"


@dataclass
class RetentionCache:
    """Per layer: the tail (k, v, log-gates [b, t, hk(, d)] of the tokens not folded into the state)
    and the state (S, z), or None before the first fold. `seen` counts every token the model has
    taken, folded or not: positions continue from it."""
    layers: int
    tails: list = field(default=None)
    states: list = field(default=None)
    seen: int = 0
    is_compileable = False  # what generate() asks of a cache before it compiles a decode step

    def __post_init__(self):
        self.tails = [None] * self.layers
        self.states = [None] * self.layers

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    def extend(self, layer: int, k, v, log_g):
        """The layer's tail with k, v, log_g appended."""
        tail = self.tails[layer]
        if tail is not None:
            k, v, log_g = (torch.cat([old, new], dim=1) for old, new in zip(tail, (k, v, log_g)))
        self.tails[layer] = (k, v, log_g)
        return k, v, log_g

    def fold(self, layer: int, state, sum_of_keys) -> None:
        self.states[layer] = (state, sum_of_keys)
        self.tails[layer] = None


def retention_forward(attention: nn.Module, hidden_states: torch.Tensor, position_embeddings, attention_mask=None,
                      past_key_values: RetentionCache | None = None, **kwargs):
    """The forward of a retention layer (`attention` holds q/k/v/o/g projections, optionally
    q_norm/k_norm, and the config); `attention_mask` is the [b, t] padding mask of these tokens
    (1: a token, 0: padding) or None. Returns (output, None), as transformers' attention layers do."""
    config = attention.config
    shape = (*hidden_states.shape[:-1], -1, attention.head_dim)
    q = attention.q_proj(hidden_states).view(shape)
    k = attention.k_proj(hidden_states).view(shape)
    v = attention.v_proj(hidden_states).view(shape)
    if hasattr(attention, "q_norm"):
        q, k = attention.q_norm(q), attention.k_norm(k)
    log_g = nn.functional.logsigmoid(attention.g_proj(hidden_states).float())  # [b, t, hk]
    cos, sin = position_embeddings  # [b, t, d]
    q, k = _rotated(q, cos, sin), _rotated(k, cos, sin)
    if attention_mask is not None:
        keep = attention_mask.bool()[..., None]
        k, v = (torch.where(keep[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device)) for x in (k, v))
        log_g = torch.where(keep, log_g, 0.0)
    impl = kernels(q.device)
    layer = attention.layer_idx
    if past_key_values is None or (past_key_values.tails[layer] is None and past_key_values.states[layer] is None):
        out = impl.power_retention(q, k, v, log_g, deg=DEGREE, scale=attention.scaling,
                                   chunk_size=config.prefill_chunk_size, switch_over_seq_len=config.switch_over_seq_len)
        if past_key_values is not None:
            past_key_values.extend(layer, k, v, log_g)
    else:
        if q.shape[1] != 1:
            raise RetentionError("a retention model decodes one token at a time after its prompt")
        k, v, log_g = past_key_values.extend(layer, k, v, log_g)
        state, sum_of_keys = past_key_values.states[layer] or (None, None)
        out, state, sum_of_keys = impl.power_retention_inference(
            q, k, v, log_g, initial_state=state, sum_of_keys=sum_of_keys, deg=DEGREE, scale=attention.scaling,
            switch_over_seq_len=config.chunk_size)
        if config.chunk_size is not None and k.shape[1] >= config.chunk_size:
            past_key_values.fold(layer, state, sum_of_keys)
    return attention.o_proj(out.reshape(*hidden_states.shape[:-1], -1)), None


def _rotated(x, cos, sin):
    """RoPE on [b, t, h, d] (the base models' rotate-half convention)."""
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin
