"""Engines: what turns prompts into greedy completions, and scores tokens, under an attention pattern.

Every engine implements the same small interface, `Engine`; its class (`EngineType`) loads it and
says what a run's manifest records of it. ENGINES names the classes: the transformers engine
(engines/hf.py) is the exact reference and runs on CPU; the vLLM engine (engines/vllm_engine.py) is
the fast one for real checkpoints on GPUs. A class is imported only when its name is asked for, so
a transformers run never imports vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
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

    def score_tokens(self, rows: list[list[int]]) -> list[tuple[list[float], list[bool]]]:
        """For each row of token ids, each token's log-probability after the first given those before
        it under the pattern, and whether it is the greedy choice (log-likelihoods, perplexity)."""

    def close(self) -> None:
        """Free the model and any processes; the engine is unusable afterwards."""


class EngineType(Protocol):
    """An engine's class: it loads the engine and says what a run's manifest records of it."""

    def load(self, checkpoint: Path, pattern, settings) -> Engine:
        """The engine with `checkpoint` loaded under `pattern` (settings: ppa_eval.settings.Settings)."""

    def attention_kernel(self, requested: str | None, device: str, pattern, checkpoint: Path) -> str:
        """The attention it runs `pattern` with on `checkpoint` (the manifest's attn_kernel), given
        --attn-kernel or None."""

    def library_versions(self) -> dict[str, str]:
        """The versions of the libraries it generates with, beyond those every run records."""


@dataclass(frozen=True)
class EngineEntry:
    path: str        # "module:class" of its EngineType, imported when the engine is asked for
    batch_size: int  # prompts per generate call when the settings give none


ENGINES = {
    "hf": EngineEntry("ppa_eval.engines.hf:HFEngine", 8),  # padded batches: padding grows with the batch
    "vllm": EngineEntry("ppa_eval.engines.vllm_engine:VLLMEngine", 256),  # continuous batching: more is faster
}


def engine_type(name: str) -> EngineType:
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; use one of {', '.join(ENGINES)}")
    module, _, cls = ENGINES[name].path.partition(":")
    return getattr(import_module(module), cls)


def make_engine(checkpoint: Path, pattern, settings) -> Engine:
    """The engine `settings.engine` names, loaded with `checkpoint` under `pattern`."""
    import torch

    torch.manual_seed(settings.seed)
    return engine_type(settings.engine).load(checkpoint, pattern, settings)
