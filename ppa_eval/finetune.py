"""Fine-tune a checkpoint under an attention pattern, once per pattern: the paper's method, scaled down.

The model is loaded by the evaluation engine's own loader (engines.hf.load_model) on one of its two
mask paths that have a backward pass, the exact boolean mask ("sdpa") or flex attention ("flex"):
training attends exactly as evaluation does (the Triton kernels are forward-only). Every pattern
gets the same data, batches, steps, learning rate and seed (training_data.py); the full-attention
checkpoint is fine-tuned the same way, as the paper's "Full Attention" row is.

    OUT/finetune.json                     the recipe, the base checkpoint and its sha256, the data's sha256, versions
    OUT/<run>/                            a fine-tuned checkpoint, written whole when its training ends: weights,
                                          tokenizer, and a config.json naming its pattern (ppa_attention), so
                                          `ppa-eval evaluate OUT/<run>` and `ppa-eval sweep OUT` need no flags
    OUT/training/<run>/state.pt           weights, optimizer and step, every `save_every` steps: the resume point
    OUT/training/<run>/log.jsonl          one line per step: loss, target tokens, tokens, seconds, learning rate
    OUT/training/<run>/summary.json       written last: steps, tokens, wall time, tokens per second, device

<run> is the run name `evaluate` gives the base checkpoint under that pattern (runs.run_name), so a
sweep over OUT names its results as a training-free sweep of the base model does. A run killed at
any point (kill -9 included) resumes from its last state.pt when the command is run again; the
batches are fixed by the recipe, so the resumed run trains on what the killed one would have.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ppa_eval.checkpoints import content_sha256
from ppa_eval.errors import PPAEvalError
from ppa_eval.patterns import BlockPattern, format_spec
from ppa_eval.runs import exclusive, run_name, write_json_atomic
from ppa_eval.training_data import DataRecipe, Example, build_examples, data_sha256, plan_batches

TRAIN_KERNELS = ("sdpa", "flex")  # the engine's attention paths with a backward pass


class FinetuneError(PPAEvalError):
    """A fine-tuning output directory or setting that cannot be used."""


@dataclass(frozen=True)
class Recipe:
    data: DataRecipe = field(default_factory=DataRecipe)
    epochs: int = 1
    batch_tokens: int = 32768  # padded tokens per step
    lr: float = 1e-4           # AdamW peak, after linear warm-up; cosine decay to lr / 10
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    save_every: int = 20       # steps between resume points
    seed: int = 0              # batch order


def lr_at(step: int, steps: int, recipe: Recipe) -> float:
    """Learning rate of `step` (0-based): linear warm-up, then cosine from lr down to lr / 10."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, steps - recipe.warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def collate(examples: list[Example], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention_mask, target_mask), right-padded: target_mask marks the tokens the loss predicts."""
    length = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    target = torch.zeros_like(ids, dtype=torch.bool)
    for row, example in enumerate(examples):
        ids[row, : len(example.ids)] = torch.tensor(example.ids)
        attention[row, : len(example.ids)] = 1
        target[row, example.target_start : len(example.ids)] = True
    return ids.to(device), attention.to(device), target.to(device)


def target_logits(model, ids: torch.Tensor, attention: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logits of the positions that predict target tokens, [n_targets, vocab]: the model's own forward
    (the base model, then the output layer on those rows only: a whole batch's logits over the
    vocabulary would be gigabytes)."""
    hidden = model.base_model(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
    return model.get_output_embeddings()(hidden[:, :-1][target[:, 1:]])


def loss_of(model, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    ids, attention, target = batch
    return F.cross_entropy(target_logits(model, ids, attention, target).float(), ids[:, 1:][target[:, 1:]])


def _settings(base: Path, recipe: Recipe, attn_kernel: str, examples: list[Example]) -> dict:
    import transformers

    from ppa_eval import __version__

    return {"base_checkpoint": str(base), "base_sha256": content_sha256(base), "recipe": asdict(recipe),
            "attn_kernel": attn_kernel, "examples": len(examples), "data_sha256": data_sha256(examples),
            "versions": {"ppa_eval": __version__, "torch": torch.__version__, "transformers": transformers.__version__}}


def _check_settings(path: Path, settings: dict) -> None:
    """OUT holds fine-tunes of one recipe only: the same base, data and hyperparameters for every pattern."""
    settings = json.loads(json.dumps(settings))  # as it reads back: tuples as lists
    if path.is_file():
        held = json.loads(path.read_text())
        differ = [key for key in settings if key != "versions" and held.get(key) != settings[key]]
        if differ:
            raise FinetuneError(f"{path.parent} holds fine-tunes made with other settings ({', '.join(differ)}); "
                                "use another --out, or the settings recorded in its finetune.json")
    write_json_atomic(path, settings)


def _save_atomic(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _resume(training_dir: Path, model, optimizer) -> int:
    """The step to start from: that of the last resume point, whose weights and optimizer are loaded;
    the log is cut back to it."""
    state_path, log_path = training_dir / "state.pt", training_dir / "log.jsonl"
    step = 0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    lines = log_path.read_text().splitlines(keepends=True) if log_path.is_file() else []
    kept = [line for line in lines if line.endswith("\n") and json.loads(line)["step"] < step]
    log_path.write_text("".join(kept))
    return step


def train_one(base: Path, name: str, pattern: BlockPattern, examples: list[Example], recipe: Recipe, out: Path,
              device: str, attn_kernel: str = "sdpa") -> Path:
    """Fine-tune `base` under `pattern` into OUT/<run> (skipped when that is already there); returns it."""
    from ppa_eval.engines.hf import load_model

    run = run_name(name, pattern)
    final, training_dir = out / run, out / "training" / run
    if (training_dir / "summary.json").is_file() and (final / "config.json").is_file():
        return final
    with exclusive(training_dir):
        model, tokenizer = load_model(base, pattern, device, "float32", attn_kernel)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        batches = plan_batches(examples, recipe.batch_tokens, recipe.seed) * recipe.epochs
        step = _resume(training_dir, model, optimizer)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda")
        progress = tqdm(total=len(batches), initial=step, desc=f"finetune {format_spec(pattern)}", unit="step",
                        dynamic_ncols=True)
        with open(training_dir / "log.jsonl", "a") as log:
            for step in range(step, len(batches)):
                start = time.perf_counter()
                batch = collate([examples[i] for i in batches[step]], tokenizer.pad_token_id, device)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, len(batches), recipe)
                with autocast:
                    loss = loss_of(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss_value = loss.item()  # waits for the GPU, so the step's time is its own
                seconds = time.perf_counter() - start
                tokens = int(batch[1].sum())
                log.write(json.dumps({"step": step, "loss": loss_value, "targets": int(batch[2].sum()),
                                      "tokens": tokens, "seconds": seconds, "lr": group["lr"]}) + "\n")
                log.flush()
                progress.update(1)
                progress.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens / seconds:,.0f}")
                if (step + 1) % recipe.save_every == 0 and step + 1 < len(batches):
                    _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1},
                                 training_dir / "state.pt")
        progress.close()
        _save_checkpoint(model, tokenizer, final)
        _write_summary(training_dir, device)
        (training_dir / "state.pt").unlink(missing_ok=True)
    return final


def _save_checkpoint(model, tokenizer, final: Path) -> None:
    """The fine-tuned model as a Hugging Face checkpoint, whole or not at all. Its config names the
    pattern: load_model wrote it there (hf_attention.set_pattern)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if final.exists():  # a checkpoint of a run killed between here and its summary
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_summary(training_dir: Path, device: str) -> None:
    steps = [json.loads(line) for line in (training_dir / "log.jsonl").read_text().splitlines()]
    seconds = sum(s["seconds"] for s in steps)
    tokens = sum(s["tokens"] for s in steps)
    write_json_atomic(training_dir / "summary.json", {
        "steps": len(steps), "tokens": tokens, "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "first_loss": steps[0]["loss"], "last_loss": steps[-1]["loss"],
        "device": torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu",
    })


def finetune(base: Path, name: str, patterns: list[BlockPattern], recipe: Recipe, out: Path, device: str,
             attn_kernel: str = "sdpa") -> list[Path]:
    """Fine-tune `base` once per pattern into OUT (see the module's docstring); returns the checkpoints."""
    from ppa_eval.engines.model_files import load_tokenizer

    if attn_kernel not in TRAIN_KERNELS:
        raise FinetuneError(f"--attn-kernel {attn_kernel} has no backward pass; fine-tune with one of "
                            f"{', '.join(TRAIN_KERNELS)}")
    if attn_kernel == "flex" and torch.device(device).type == "cpu":
        raise FinetuneError("flex attention has no backward pass on the CPU (torch's own limit); "
                            "fine-tune with --attn-kernel sdpa there")
    examples = build_examples(load_tokenizer(base), recipe.data)
    if not examples:
        raise FinetuneError("the recipe makes no training example; raise --per-length or --plain")
    _check_settings(out / "finetune.json", _settings(base, recipe, attn_kernel, examples))
    return [train_one(base, name, pattern, examples, recipe, out, device, attn_kernel) for pattern in patterns]
