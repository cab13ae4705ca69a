"""Engines: what turns prompts into greedy completions under an attention pattern.

Every engine implements the same small interface, `Engine`; `make_engine` picks one from the
run's settings. The transformers engine (engines/hf.py) is the exact reference and runs on CPU;
the vLLM engine (engines/vllm_engine.py) is the fast one for real checkpoints on GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ppa_eval.errors import PPAEvalError


class EngineError(PPAEvalError):
    """A checkpoint or setting the engine cannot use."""


@dataclass(frozen=True)
class Generation:
    text: str                 # the completion, cut before the first stop sequence
    finish_reason: str        # "stop" (EOS or a stop sequence) or "length" (hit max_new_tokens)
    prompt_tokens: int
    completion_tokens: int


class Engine(Protocol):
    tokenizer: object         # the checkpoint's tokenizer (chat template, token counts)
    dtype: str

    def generate_batch(self, prompts: list[str], max_new_tokens: int, stop: tuple[str, ...] = ()) -> list[Generation]:
        """Greedy completions of full-text prompts (special tokens included, none added)."""

    def close(self) -> None:
        """Free the model and any processes; the engine is unusable afterwards."""


def make_engine(checkpoint: Path, pattern, settings) -> Engine:
    """The engine `settings.engine` names ("hf" or "vllm"), loaded with `checkpoint` under `pattern`."""
    import torch

    torch.manual_seed(settings.seed)
    if settings.engine == "vllm":
        from ppa_eval.engines.vllm_engine import VLLMOptions, start_engine

        return start_engine(checkpoint, pattern, settings.device, settings.dtype, settings.seed,
                            VLLMOptions(**settings.engine_options))
    from ppa_eval.engines.hf import HFEngine

    return HFEngine(checkpoint, pattern, settings.device, settings.dtype, settings.attn_kernel)
