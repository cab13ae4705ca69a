"""The transformers engine: load a causal LM (checkpoint directory or GGUF file) with PPA attention
on every attention layer, and generate greedily in left-padded batches.

It is the reference engine: exact on CPU and GPU, simple, and slow for 9B checkpoints (use vLLM
for those). Batches are formed from prompts sorted by length, so padding stays small.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import torch

from ppa_eval.engines import EngineError, Generation, hf_attention, hf_graph
from ppa_eval.engines.model_files import is_retention, load_tokenizer, pretrained_source, reading, resolve_dtype
from ppa_eval.patterns import BlockPattern, PowerRetention


FLEX_MIN_HEAD_DIM = 16  # torch inductor's flex attention kernels refuse smaller heads on a GPU


def attention_kernel(checkpoint: Path, pattern: BlockPattern, device: str, requested: str | None = None) -> str:
    """--attn-kernel checked against the checkpoint's head size on a GPU, or the kernel chosen by default.

    GPU: the Triton PPA kernels (bench/attention.py) for the families that declare them, flex
    attention's block sparsity for the others (PowerAttention), each where it takes the model's
    heads, else the exact boolean-mask SDPA path. CPU: SDPA, since flex attention on CPU fails to
    compile in generate() with left padding (torch 2.13). A retention checkpoint runs its own
    layers (ppa_eval.retention), and only those: named retention-triton or retention-reference."""
    if isinstance(pattern, PowerRetention) or is_retention(checkpoint):
        return _retention_kernel(checkpoint, pattern, device, requested)
    if requested is not None and requested not in hf_attention.ATTENTION_IMPLEMENTATIONS:
        raise EngineError(f"unknown attention kernel {requested!r}; use one of "
                          f"{', '.join(sorted(hf_attention.ATTENTION_IMPLEMENTATIONS))}")
    if torch.device(device).type != "cuda":
        return requested or "sdpa"
    from ppa_eval.engines.model_files import head_dim
    from ppa_eval.kernels import runs_pattern, takes_head_dim  # Triton: imported only where a GPU is

    size = head_dim(checkpoint)
    runs = {"ppa": runs_pattern(pattern) and takes_head_dim(size), "flex": size >= FLEX_MIN_HEAD_DIM, "sdpa": True}
    if requested is None:
        return next(kernel for kernel in ("ppa", "flex", "sdpa") if runs[kernel])
    if not runs[requested]:
        raise EngineError(f"--attn-kernel {requested} cannot run {checkpoint} under {pattern.spec()} on a GPU "
                          f"(heads of {size}); use --attn-kernel sdpa")
    return requested


def _retention_kernel(checkpoint: Path, pattern: BlockPattern, device: str, requested: str | None) -> str:
    from ppa_eval.retention.layer import kernel_name

    if not isinstance(pattern, PowerRetention):
        raise EngineError(f"{checkpoint} is a power-retention model: it runs retention, not {pattern.spec()}; "
                          "drop --attention/--power (its config names its retention spec)")
    if not is_retention(checkpoint):
        raise EngineError(f"{pattern.spec()} runs only on retention checkpoints (Brumby, PowerCoder), and {checkpoint} "
                          "is not one; give it a pattern such as ppa:p=3/4,w=64")
    if requested not in (None, kernel_name(device)):  # a resolved run names it, the flag cannot
        raise EngineError(f"--attn-kernel {requested} does not apply to the retention model {checkpoint}; drop it")
    return kernel_name(device)


def load_model(checkpoint: Path, pattern: BlockPattern, device: str = "cpu", dtype: str = "auto",
               attn_kernel: str | None = None):
    """(model, tokenizer) with `pattern` on every attention layer. `checkpoint` is a directory or a .gguf file."""
    from transformers import AutoModelForCausalLM

    checkpoint = Path(checkpoint)
    attn_kernel = attention_kernel(checkpoint, pattern, device, attn_kernel)
    tokenizer = load_tokenizer(checkpoint)  # first: it fails in a second, the weights take longer
    if isinstance(pattern, PowerRetention):  # its own layers, with the spec's cache settings
        from ppa_eval.retention import layer, register

        register()
        layer.kernels(torch.device(device))  # a GPU without the retention package fails here, not mid-run
        attention = pattern.config_entries()
    else:
        attention = {"attn_implementation": hf_attention.ATTENTION_IMPLEMENTATIONS[attn_kernel]}
    with reading(checkpoint, "model"):
        model = AutoModelForCausalLM.from_pretrained(**pretrained_source(checkpoint), dtype=resolve_dtype(dtype, device),
                                                     **attention)
    model = model.to(device)
    if not isinstance(pattern, PowerRetention):
        hf_attention.set_pattern(model.config, pattern)
    model.eval()
    return model, tokenizer


@lru_cache(maxsize=None)
def _note_prefill_path(device: str) -> None:
    """Say once per process and device which path the PPA kernels' prefill takes, and why."""
    from ppa_eval.kernels import flash4

    print(f"note: PPA prefill: {flash4.status(device)}", file=sys.stderr)


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _tokens_to_stop(row: list[int], holds_stop) -> int:
    """The fewest leading tokens of `row` whose text holds a stop string (holds_stop(row) is true)."""
    low, high = 1, len(row)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if holds_stop(row[:middle]) else (middle + 1, high)
    return high


class HFEngine:
    @classmethod
    def load(cls, checkpoint: Path, pattern: BlockPattern, settings) -> HFEngine:
        return cls(checkpoint, pattern, settings.device, settings.dtype, settings.attn_kernel)

    @staticmethod
    def attention_kernel(requested: str | None, device: str, pattern: BlockPattern, checkpoint: Path) -> str:
        """--attn-kernel, checked, or the kernel this device runs `pattern` with by default."""
        return attention_kernel(checkpoint, pattern, device, requested)

    @staticmethod
    def library_versions() -> dict[str, str]:
        return {}  # torch and transformers: every run records them

    def __init__(self, checkpoint: Path, pattern: BlockPattern, device: str = "cpu", dtype: str = "auto",
                 attn_kernel: str | None = None):
        self.device = device
        self.attn_kernel = attention_kernel(checkpoint, pattern, device, attn_kernel)
        self.model, self.tokenizer = load_model(checkpoint, pattern, device, dtype, self.attn_kernel)
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        # Decode steps from a CUDA graph (hf_graph.py) where the attention can be captured: the
        # PPA kernels read each row's length on the device; the other kernels take masks built on the host.
        self.graph_decode = self.attn_kernel == "ppa" and hf_graph.runs_model(self.model)
        if self.attn_kernel == "ppa":
            _note_prefill_path(str(torch.device(device)))
        if torch.device(device).type == "cpu":
            self.model.register_forward_pre_hook(_one_thread_for_decode(torch.get_num_threads()), with_kwargs=True)

    @torch.inference_mode()
    def generate_batch(self, prompts: list[str], max_new_tokens: int, stop: tuple[str, ...] = ()) -> list[Generation]:
        """Greedy completions of one left-padded batch (prompts are full text, special tokens included)."""
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        eos = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}
        if self.graph_decode:
            new_tokens = hf_graph.greedy_generate(
                self.model, enc["input_ids"], enc["attention_mask"], max_new_tokens,
                done=lambda rows: all(eos.intersection(row) or self._holds_stop(row, stop) for row in rows))
        else:
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                stop_strings=list(stop) or None,
                tokenizer=self.tokenizer,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new_tokens = out[:, enc["input_ids"].shape[1]:].tolist()
        return [self._finish(row, n_prompt, eos, stop)
                for row, n_prompt in zip(new_tokens, enc["attention_mask"].sum(dim=1).tolist())]

    def score_tokens(self, rows: list[list[int]]) -> list[tuple[list[float], list[bool]]]:
        """Each token's log-probability after the first, and whether it is the greedy choice (hf_scoring.py)."""
        from ppa_eval.engines.hf_scoring import token_logprobs

        return token_logprobs(self.model, rows, self.tokenizer.pad_token_id)

    def close(self) -> None:
        """Drop the model's weights (and its GPU memory) now rather than whenever Python collects it."""
        device = torch.device(self.device)
        del self.model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def _text(self, row: list[int]) -> str:
        return self.tokenizer.decode(row, skip_special_tokens=True)

    def _holds_stop(self, row: list[int], stop: tuple[str, ...]) -> bool:
        return _cut_at_stop(self._text(row), stop)[1]

    def _finish(self, row: list[int], prompt_tokens: int, eos: set[int], stop: tuple[str, ...]) -> Generation:
        # A row ends at its first EOS, or at the token that completes a stop string. What follows
        # is no part of it: generate() pads it, the graph decode (hf_graph) runs on.
        eos_at = next((i for i, token in enumerate(row) if token in eos), len(row))
        row, ended = row[:eos_at], eos_at < len(row)
        text, stopped = _cut_at_stop(self._text(row), stop)
        if stopped:
            return Generation(text=text, finish_reason="stop", prompt_tokens=prompt_tokens,
                              completion_tokens=_tokens_to_stop(row, lambda head: self._holds_stop(head, stop)))
        return Generation(text=text, finish_reason="stop" if ended else "length",
                          prompt_tokens=prompt_tokens, completion_tokens=len(row) + ended)


def _one_thread_for_decode(threads: int):
    """A decode step multiplies a few rows by each weight matrix: there OpenMP's fork/join costs
    more than it saves (a decode-shaped matmul ran many times slower on 2 threads than on 1:
    results/bench/host_costs.md), while prefill's large matmuls gain from every thread."""

    def hook(module, args, kwargs):
        tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        torch.set_num_threads(1 if tokens is not None and tokens.shape[1] == 1 else threads)

    return hook


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
