"""Power retention models (Manifest AI's Brumby and PowerCoder) evaluated beside PPA.

    reference.py   power retention in PyTorch (the CPU path; the `retention` package's Triton kernels on a GPU)
    layer.py       the retention layer that replaces attention, and its cache (a state plus a short tail)
    models.py      Brumby (Qwen3 + gates) and PowerCoder (StarCoder2 + gates), reading the published checkpoints

A retention checkpoint is named, in run names, manifests and tables, by the spec of
ppa_eval.patterns.retention (`retention:degree=2,...`); the transformers engine loads it through
`register()`, which makes transformers' Auto classes know the two model types.
"""

from __future__ import annotations

MODEL_TYPES = ("brumby", "powercoder")


def register() -> None:
    """Make AutoConfig and AutoModelForCausalLM load brumby and powercoder checkpoints (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ppa_eval.retention.models import MODELS

    for model_type, (config_class, model_class) in MODELS.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModelForCausalLM.register(config_class, model_class, exist_ok=True)
