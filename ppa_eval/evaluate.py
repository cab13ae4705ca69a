"""One checkpoint under its attention pattern on the benchmark tasks:
checkpoint -> engine (with mask) -> task prompts -> generations -> grader -> results on disk
(a scored corpus, the perplexity task: documents -> token log-probabilities -> perplexity per bucket).

Work is planned as batches of the unfinished problems (prompts sorted by length, then cut every
batch_size), and a batch is the unit that is written. Batches are written in plan order, so the
finished ones are always a prefix of the plan: planning the rest again after an interruption
(the torn batch dropped, see runs.py) gives the same batches the uninterrupted run had, and a
grown --limit batches only its new problems.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import replace
from hashlib import sha256
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from ppa_eval import __version__, perplexity
from ppa_eval.checkpoints import content_sha256
from ppa_eval.engines import ENGINES, engine_type
from ppa_eval.engines.model_files import attention_shape, load_tokenizer, max_context, resolve_dtype
from ppa_eval.long_context import DEFAULT_CONTEXT_LENGTHS
from ppa_eval.patterns import BlockPattern
from ppa_eval.patterns.cost import run_cost
from ppa_eval.prompts import render_prompt
from ppa_eval.runs import (RESULT_SETTINGS, append_batch, check_manifest, exclusive, finished, pattern_fields,
                           perplexity_metrics, perplexity_record, read_samples, resume_samples, run_name,
                           sample_record, task_metrics, write_json_atomic)
from ppa_eval.settings import Settings, columns, manifest_entries
from ppa_eval.tasks import TASKS, Doc, TaskSpec, load_docs


def resolved(settings: Settings, pattern: BlockPattern, checkpoint: Path) -> Settings:
    """The settings as the run records and uses them: the dtype, attention kernel and batch size that
    were left to their defaults made explicit."""
    engine = engine_type(settings.engine)
    return replace(settings, dtype=str(resolve_dtype(settings.dtype, settings.device)).removeprefix("torch."),
                   attn_kernel=engine.attention_kernel(settings.attn_kernel, settings.device, pattern, checkpoint),
                   batch_size=settings.batch_size or ENGINES[settings.engine].batch_size)


def _versions(engine: str) -> dict:
    import torch
    import transformers

    return {"ppa_eval": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "lm_eval": _installed("lm-eval"), "python": platform.python_version(),
            **engine_type(engine).library_versions()}


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def manifest(checkpoint: Path, pattern: BlockPattern, settings: Settings, generated: dict[str, str]) -> dict:
    """What the run is (`settings` resolved): `generated` holds the sha256 of each generated task's problem set."""
    tasks = TASKS.values()  # all of them, so a later run may add tasks
    return {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": content_sha256(checkpoint),
        **pattern_fields(pattern),
        **manifest_entries(settings),
        "generated_sha256": generated,
        "tasks": {t.name: {"lm_eval_name": t.lm_eval_name, "config_sha256": t.config_sha256,
                           "data_sha256": t.data_sha256} for t in tasks},
        "versions": _versions(settings.engine),
    }


def _docs(task: TaskSpec, checkpoint: Path, settings: Settings) -> list[Doc] | list[perplexity.Document]:
    """The task's documents, made once per process: building lm-eval's few-shot prompts or fitting
    160 haystacks to 1k-8k tokens takes seconds to minutes, and a sweep asks for the same set for
    every checkpoint and p. Generated sets and scored corpora depend on the checkpoint only through
    its tokenizer and context window, so the fine-tunes of one base share theirs."""
    if not (task.generated or task.scored):
        key = (task.name, settings.limit, settings.data_source)
        if key not in _DOCS:
            _DOCS[key] = load_docs(task, limit=settings.limit, source=settings.data_source)
        return _DOCS[key]
    lengths = tuple(settings.context_lengths or DEFAULT_CONTEXT_LENGTHS)
    window = max_context(checkpoint)
    key = (task.name, _tokenizer_identity(checkpoint), window, settings.limit, lengths, settings.seed)
    if key not in _DOCS:
        tokenizer = load_tokenizer(checkpoint)
        _DOCS[key] = (perplexity.documents(task.docs.data_set.read("test"), task.docs.id_field, tokenizer,
                                           list(lengths), settings.limit, window) if task.scored else
                      load_docs(task, limit=settings.limit, tokenizer=tokenizer, context_lengths=list(lengths),
                                seed=settings.seed, max_context=window))
    return _DOCS[key]


_DOCS: dict[tuple, list[Doc]] = {}


def _tokenizer_identity(checkpoint: Path) -> str:
    """What fixes a checkpoint's tokenizer: the bytes of every file of the directory but its weights
    and model configs (a GGUF file holds its tokenizer among the weights: its path stands for it)."""
    path = Path(checkpoint)
    if not path.is_dir():
        return str(path.resolve())
    digest = sha256()
    for file in sorted(path.iterdir()):
        if file.is_file() and file.suffix not in (".safetensors", ".bin", ".pt") and not file.name.startswith(".") \
                and file.name not in ("config.json", "generation_config.json"):
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def docs_sha256(docs: list[Doc]) -> str:
    """sha256 of a problem set: every prompt and gold answer, in order."""
    digest = sha256()
    for doc in docs:
        digest.update(json.dumps([doc.doc_id, doc.prompt, doc.gen_prefix, doc.gold], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def plan_batches(docs: list[Doc], prompts: dict[str, str], batch_size: int) -> list[list[Doc]]:
    """Batches of similar-length prompts; the plan depends only on the prompts given."""
    ordered = sorted(docs, key=lambda d: (len(prompts[d.doc_id]), d.doc_id))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def evaluate_task(engine, task: TaskSpec, docs: list[Doc], pattern: BlockPattern, settings: Settings,
                  task_dir: Path, checkpoint: str) -> dict:
    """Generate and grade every unfinished problem of `task`, then write its metrics."""
    metrics_path = task_dir / "metrics.json"
    samples_path = task_dir / "samples.jsonl"
    task_dir.mkdir(parents=True, exist_ok=True)
    metrics_path.unlink(missing_ok=True)  # a grown limit reopens a finished task: it is not finished meanwhile
    prompts = {d.doc_id: render_prompt(d.prompt, engine.tokenizer, settings.chat_template, settings.thinking,
                                       d.gen_prefix) for d in docs}
    max_new_tokens = task.max_gen_toks if settings.max_new_tokens is None else settings.max_new_tokens
    done = {s["doc_id"] for s in resume_samples(samples_path)}
    todo = [d for d in docs if d.doc_id not in done]
    progress = tqdm(total=len(docs), initial=len(docs) - len(todo), desc=task.name, unit="problem",
                    dynamic_ncols=True)
    for batch in plan_batches(todo, prompts, settings.batch_size):
        start = time.perf_counter()
        generations = engine.generate_batch([prompts[d.doc_id] for d in batch], max_new_tokens, task.stop)
        seconds = time.perf_counter() - start
        verdicts = task.grader.grade_many([(g.text, d.gold) for g, d in zip(generations, batch)])
        lm_eval = [task.lm_eval_metrics.scores(g.text, d.record) if task.lm_eval_metrics else None
                   for g, d in zip(generations, batch)]
        append_batch(samples_path, [sample_record(d, prompts[d.doc_id], g, v, seconds / len(batch), scores)
                                    for d, g, v, scores in zip(batch, generations, verdicts, lm_eval)])
        progress.update(len(batch))
        progress.set_postfix(tok_s=f"{sum(g.completion_tokens for g in generations) / seconds:.1f}")
    progress.close()
    samples = read_samples(samples_path)
    result = task_metrics(task.name, samples, checkpoint, pattern, columns(settings))
    result |= run_cost(pattern, attention_shape(Path(checkpoint), settings.dtype), samples)
    write_json_atomic(metrics_path, result)
    return result


def score_task(engine, task: TaskSpec, docs: list[perplexity.Document], pattern: BlockPattern,
               settings: Settings, task_dir: Path, checkpoint: str) -> dict:
    """Score every unfinished document of a corpus task (perplexity), then write its metrics."""
    metrics_path = task_dir / "metrics.json"
    samples_path = task_dir / "samples.jsonl"
    task_dir.mkdir(parents=True, exist_ok=True)
    metrics_path.unlink(missing_ok=True)
    lengths = settings.context_lengths or list(DEFAULT_CONTEXT_LENGTHS)
    done = {s["doc_id"] for s in resume_samples(samples_path)}
    todo = [d for d in docs if d.doc_id not in done]
    rows = max(1, min(settings.batch_size, perplexity.TOKENS_PER_BATCH // max(lengths)))
    progress = tqdm(total=len(docs), initial=len(docs) - len(todo), desc=task.name, unit="document",
                    dynamic_ncols=True)
    for batch in (todo[i : i + rows] for i in range(0, len(todo), rows)):
        start = time.perf_counter()
        scores = engine.score_tokens([d.token_ids for d in batch])
        seconds = time.perf_counter() - start
        append_batch(samples_path, [perplexity_record(d.doc_id, perplexity.bucket_scores(d, logprobs, engine.tokenizer,
                                                                                          lengths), seconds / len(batch))
                                    for d, (logprobs, _) in zip(batch, scores)])
        progress.update(len(batch))
        progress.set_postfix(tok_s=f"{sum(len(d.token_ids) for d in batch) / seconds:.0f}")
    progress.close()
    result = perplexity_metrics(task.name, read_samples(samples_path), checkpoint, pattern, columns(settings),
                                settings.seed)
    write_json_atomic(metrics_path, result)
    return result


def evaluate(checkpoint: Path, name: str, pattern: BlockPattern, settings: Settings, out: Path,
             engine_factory) -> Path:
    """Evaluate one checkpoint on settings.tasks; returns its run directory. Finished tasks are
    skipped; the engine is closed before returning, so a sweep holds one model at a time."""
    settings = resolved(settings, pattern, checkpoint)
    tasks = [TASKS[t] for t in settings.tasks]
    run_dir = out / run_name(name, pattern)
    with exclusive(run_dir):
        # Generated problems are made in the model's tokenizer before anything is written, so the
        # manifest names the exact set (and a resumed run must get the same one).
        generated = {t.name: _docs(t, checkpoint, settings) for t in tasks if t.generated}
        # checked before skipping finished tasks: results made with other settings are never reused
        notes = check_manifest(run_dir / "manifest.json",
                               manifest(checkpoint, pattern, settings,
                                        {name: docs_sha256(docs) for name, docs in generated.items()}),
                               RESULT_SETTINGS)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        unfinished = [t for t in tasks if not finished(run_dir / t.name, settings.limit)]
        if not unfinished:
            return run_dir
        engine = engine_factory(checkpoint, pattern, settings)
        try:
            for task in unfinished:
                docs = generated.get(task.name) or _docs(task, checkpoint, settings)
                run_task = score_task if task.scored else evaluate_task
                run_task(engine, task, docs, pattern, settings, run_dir / task.name, str(checkpoint))
        finally:
            engine.close()
    return run_dir
