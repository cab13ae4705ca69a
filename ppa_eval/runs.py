"""The run format, defined here only: the layout on disk, what each file holds, how it is written
(atomically, resumably) and how it is read back and validated.

    OUT/<run>/manifest.json            what was run: checkpoint + hash, attention pattern, engine, versions, settings
    OUT/<run>/<task>/samples.jsonl     one line per finished problem (`sample_record`), appended batch by batch
    OUT/<run>/<task>/metrics.json      written last (`task_metrics`): its presence means the task is finished

A scored task (perplexity) has the same files: a line per document (`perplexity_record`) and
metrics with `"kind": "scored"` (`perplexity_metrics`) instead of an accuracy (`"kind": "graded"`,
the default).

Nothing half-written passes for finished: JSON files are written to a temporary file and renamed,
and samples.jsonl only grows by whole batches followed by fsync. Every line of a batch says how
many lines its batch has (`batch_lines`), so a reader knows where the last complete batch ends: a
run killed mid-batch leaves whole lines of a torn batch behind, and resume cuts the file back to
the end of the last complete batch. The torn batch's problems are then planned and generated
again with the other unfinished ones, exactly as an uninterrupted run would batch them, so the
file ends with each problem once and with the same results.

A run may grow: a larger --limit keeps the finished problems and evaluates only the new ones. It
may not shrink, nor change any other setting in RESULT_SETTINGS, once it holds a sample (before
that, as after a start that failed, there is nothing to protect). Of the library versions, those
that decide what is generated and how it is graded must match to resume (GENERATION_VERSIONS:
ppa-eval, transformers, lm-eval, vLLM); another torch build or Python only makes a note: the
settings that shape the numerics (dtype, attention kernel) are compared on their own, and a run's
samples were reported identical under torch 2.13.0+cpu and 2.14.1+cu130.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
from contextlib import contextmanager
from hashlib import sha256
from itertools import accumulate
from pathlib import Path

from ppa_eval import perplexity
from ppa_eval.compat import with_attention
from ppa_eval.errors import PPAEvalError
from ppa_eval.jsonl import read_objects
from ppa_eval.patterns import BlockPattern, PatternError, format_spec, parse_power, parse_spec
from ppa_eval.settings import RESUMED
from ppa_eval.stats import accuracy_ci


class RunError(PPAEvalError):
    """Results on disk that do not fit the run being asked for, or cannot be read."""


class RunLocked(RunError):
    """The run is being written by another process (its lock is held; the OS frees it when that process dies)."""

    exit_status = 75  # EX_TEMPFAIL: a sweep's `evaluate` worker tells "another sweep has it" from a failure


# Manifest keys that change what a run computes: a resumed run must match every one of them: the
# run settings that say so (settings.RESUMED), and what the run is beside them, the generation-relevant
# library versions included (a run must not mix two software stacks). `limit` is apart: a run may
# grow (a larger limit), never shrink.
RESULT_SETTINGS = ("checkpoint_sha256", "attention", *RESUMED, "tasks", "generated_sha256", "versions")
# Of those, per-task tables: a resumed run may add tasks, and the entries both runs have must agree.
PER_TASK_SETTINGS = ("generated_sha256",)
# The entries of `versions` that must match to resume; the others (torch, python) are noted.
GENERATION_VERSIONS = ("ppa_eval", "transformers", "lm_eval", "vllm")


def run_name(checkpoint_name: str, pattern: BlockPattern) -> str:
    """The directory of one (checkpoint, pattern) run: `<checkpoint>__` and the pattern's run_name(),
    by default its spec with its punctuation made safe for a file name, e.g.
    `__powerattention_block64_window1_sink1`, `__ppa_p3-4_w64_sink4`; `__p<p>_w<w>` for sink-free PPA
    (the name runs have always had). A checkpoint whose name already ends so (a fine-tune, named by
    the run of its base) keeps its name."""
    suffix = "__" + pattern.run_name()
    return checkpoint_name if checkpoint_name.endswith(suffix) else checkpoint_name + suffix


def shard_of(run: str, count: int) -> int:
    """Which of `count` shards (0 to count - 1) a run belongs to: a hash of its name, so each worker of
    a job array takes its share without talking to the others, and adding checkpoints to a sweep
    leaves the other runs where they were."""
    return int(sha256(run.encode()).hexdigest(), 16) % count


def pattern_fields(pattern: BlockPattern) -> dict:
    """How manifest.json and metrics.json name the pattern: its spec, and the family's own fields
    (for PPA p and w, which the paper's tables and S-curves are keyed on)."""
    return {"attention": format_spec(pattern), **pattern.fields()}


def sample_record(doc, prompt: str, generation, verdict, seconds: float, lm_eval: dict | None = None) -> dict:
    """One line of samples.jsonl: the problem, the exact prompt, the response and its grading, with
    lm-eval's own scores of it where the task has them (plus the document's own fields: a
    long-context problem's context_length and depth)."""
    return {
        "doc_id": doc.doc_id,
        "gold": doc.gold,
        "prompt": prompt,
        "prompt_sha256": sha256(prompt.encode()).hexdigest(),
        "response": generation.text,
        "extracted": verdict.extracted,
        "extracted_by": verdict.extracted_by,
        "correct": verdict.correct,
        "correct_math_verify": verdict.math_verify,
        "grade_reason": verdict.reason,
        "grader_timed_out": verdict.timed_out,
        "grade_error": verdict.error,
        "finish_reason": generation.finish_reason,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "generation_s": round(seconds, 4),
        **({"lm_eval": lm_eval} if lm_eval is not None else {}),
        **doc.fields,
    }


def _accuracy(samples: list[dict]) -> dict:
    correct = sum(s["correct"] for s in samples)
    low, high = accuracy_ci(correct, len(samples))
    return {"accuracy": correct / len(samples), "ci95": [low, high], "n": len(samples)}


def task_metrics(task: str, samples: list[dict], checkpoint: str, pattern: BlockPattern, settings: dict) -> dict:
    """metrics.json of a finished task: accuracy with its Wilson 95% interval, rates, speed, and
    lm-eval's own metrics (means of the per-sample `lm_eval` scores) where the task has them, with
    `settings` (settings.columns: the run's limit)."""
    n = len(samples)
    seconds = sum(s["generation_s"] for s in samples)
    metrics = {
        "task": task,
        "kind": "graded",
        "checkpoint": checkpoint,
        **pattern_fields(pattern),
        **_accuracy(samples),
        "no_answer_rate": sum(s["extracted"] is None for s in samples) / n,
        # answers found only by the grader's last resort (no footer, no box): counted apart, so a
        # model that stops writing the asked-for format shows up even where the fallback saves it
        "fallback_rate": sum(s.get("extracted_by") == "fallback" for s in samples) / n,
        "grade_errors": sum(s.get("grade_error") is not None for s in samples),
        "truncated_rate": sum(s["finish_reason"] == "length" for s in samples) / n,
        "grader_disagreements": sum(s["correct_math_verify"] is not None and s["correct_math_verify"] != s["correct"]
                                    for s in samples),
        "grader_timeouts": sum(s["grader_timed_out"] for s in samples),
        "tokens_per_s": sum(s["completion_tokens"] for s in samples) / seconds if seconds else 0.0,
        "wall_s": seconds,
        **settings,
    }
    lengths = sorted({s["context_length"] for s in samples if "context_length" in s})
    if lengths:  # long context: accuracy at each length too
        metrics["by_length"] = {str(length): _accuracy([s for s in samples if s.get("context_length") == length])
                                for length in lengths}
    lm_eval_names = sorted({name for s in samples for name in s.get("lm_eval", {})})
    if lm_eval_names:
        metrics["lm_eval"] = {name: sum(s["lm_eval"][name] for s in samples) / n for name in lm_eval_names}
    return metrics


def perplexity_record(doc_id: str, buckets: list[dict], seconds: float) -> dict:
    """One line of a perplexity task's samples.jsonl: a document's per-bucket tokens, bytes and
    summed negative log-likelihood in nats (ppa_eval.perplexity.bucket_scores)."""
    return {"doc_id": doc_id, "buckets": buckets, "scoring_s": round(seconds, 4)}


def perplexity_metrics(task: str, samples: list[dict], checkpoint: str, pattern: BlockPattern, settings: dict,
                       seed: int) -> dict:
    """metrics.json of a finished perplexity task: token perplexity and bits per byte per bucket,
    with per-document bootstrap 95% intervals drawn from `seed`, and `settings` (settings.columns)."""
    seconds = sum(s["scoring_s"] for s in samples)
    tokens = sum(bucket["tokens"] for s in samples for bucket in s["buckets"])
    return {"task": task, "kind": "scored", "checkpoint": checkpoint, **pattern_fields(pattern),
            "n": len(samples), "by_length": perplexity.by_length(samples, seed),
            "tokens_per_s": tokens / seconds if seconds else 0.0, "wall_s": seconds, **settings}


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results that samples.jsonl shows
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise _write_error(path, error) from None
    finally:
        Path(tmp).unlink(missing_ok=True)  # nothing left after a successful replace


def _umask() -> int:
    """The process's umask, which os.umask reads only by setting it (and so is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def append_batch(path: Path, samples: list[dict]) -> None:
    """Append one batch of samples, each marked with the batch's size (see the module doc)."""
    append_lines(path, [{**sample, "batch_lines": len(samples)} for sample in samples])


def append_lines(path: Path, records: list[dict]) -> None:
    """Append records as JSON lines, durably; on any failure the file is cut back to where it was."""
    # A lone surrogate (a model can emit one) cannot be UTF-8: it is written as its JSON escape,
    # which reads back as the same string, so the file stays valid UTF-8 and nothing is lost.
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8", "backslashreplace")
    with open(path, "ab", buffering=0) as handle:  # unbuffered: nothing is left to flush after a failure
        start = handle.tell()
        try:
            written = 0
            while written < len(data):
                written += handle.write(data[written:])
            os.fsync(handle.fileno())
        except BaseException as error:
            handle.truncate(start)  # do not leave a torn batch behind (disk full, Ctrl-C)
            if isinstance(error, OSError):
                raise _write_error(path, error) from None
            raise


def _write_error(path: Path, error: OSError) -> RunError:
    return RunError(f"could not write {path}: {error.strerror or error}; free some space and run the same command "
                    f"again: finished work is kept")


def read_samples(path: Path) -> list[dict]:
    """The samples of the complete batches; any bad whole line is an error. Nothing is written."""
    return _complete_batches(path)[0]


def resume_samples(path: Path) -> list[dict]:
    """The samples of the complete batches, after cutting the file back to the end of the last one:
    a killed run's torn batch (whole lines and a partial one) is dropped, to be generated again.
    Only the process holding the run (`exclusive`) may call this."""
    samples, end = _complete_batches(path)
    if path.exists() and path.stat().st_size != end:
        with open(path, "r+b") as handle:
            handle.truncate(end)
    return samples


def _complete_batches(path: Path) -> tuple[list[dict], int]:
    """(samples of the complete batches, the bytes they take). A line without `batch_lines` (runs
    made before batches were marked) counts as a batch of its own."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    ends = list(accumulate(len(line) + 1 for line in data.split(b"\n")[:-1]))  # after the last newline: torn
    fix = "; delete the file to recompute this task"
    samples, batch, end = [], [], 0
    for number, record in read_objects(path, RunError, fix, data=data[: ends[-1] if ends else 0]):
        if "doc_id" not in record:
            raise RunError(f"{path}, line {number}: not a sample (no doc_id){fix}")
        size = (batch[0] if batch else record).get("batch_lines", 1)
        if not _is_int(size) or size < 1:
            raise RunError(f"{path}, line {number}: 'batch_lines' must be a whole number >= 1, got {size!r}{fix}")
        batch.append(record)
        if len(batch) == size:
            samples += batch
            batch, end = [], ends[number - 1]
    return samples, end


def holds_samples(run_dir: Path) -> bool:
    """Whether any task of the run has written a sample: until then a run has no results to protect."""
    return any(path.stat().st_size for path in run_dir.glob("*/samples.jsonl"))


def finished(task_dir: Path, limit: int | None) -> bool:
    """The task's metrics.json exists and was written for `limit` (a grown limit reopens the task)."""
    path = task_dir / "metrics.json"
    return path.exists() and _load_json(path).get("limit") == limit


def check_manifest(path: Path, manifest: dict, compared: tuple[str, ...]) -> list[str]:
    """Write the manifest of a new run, or check that an existing run was made with the same
    settings (`compared`, and a limit no smaller); returns notes on what differs without changing
    results. A run that holds no sample yet (its start failed) takes the new settings."""
    if not path.exists() or not holds_samples(path.parent):
        write_json_atomic(path, manifest)
        return []
    try:
        existing = with_attention(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunError(f"{path} is not valid JSON; delete the run directory to start it again") from None

    def differs(key) -> bool:
        old, new = existing.get(key), manifest.get(key)
        if key in PER_TASK_SETTINGS:
            old, new = old or {}, new or {}
            return any(old[name] != new[name] for name in old.keys() & new.keys())
        if key == "versions":
            return _generation_versions(old) != _generation_versions(new)
        return old != new

    old_limit, new_limit = existing.get("limit"), manifest.get("limit")

    def detail(key) -> str:
        if key in PER_TASK_SETTINGS and old_limit != new_limit:  # long-context depths are spread over the limit
            return f"{key}: other problems for limit {new_limit!r}: a long-context run cannot grow"
        return f"{key}: {existing.get(key)!r} -> {manifest.get(key)!r}"

    changed = [detail(key) for key in compared if differs(key)]
    if _problems(new_limit) < _problems(old_limit):
        changed.append(f"limit: {old_limit!r} -> {new_limit!r}: a run may grow, not shrink")
    if changed:
        raise RunError(f"{path.parent} holds results made with other settings ({', '.join(changed)}); "
                       "use another --out or delete it")
    # the manifest names the run's limit and every generated set it holds
    grown = {key: {**(existing.get(key) or {}), **(manifest.get(key) or {})} for key in PER_TASK_SETTINGS}
    grown = {key: value for key, value in grown.items() if value != (existing.get(key) or {})}
    if new_limit != old_limit:
        grown["limit"] = new_limit
    if grown:
        write_json_atomic(path, {**existing, **grown})
    old_versions, new_versions = existing.get("versions") or {}, manifest.get("versions") or {}
    return [f"{path.parent} was made with {name} {old_versions[name]} and goes on with {new_versions[name]}"
            for name in sorted(old_versions.keys() & new_versions.keys())
            if name not in GENERATION_VERSIONS and old_versions[name] != new_versions[name]]


def _generation_versions(versions: dict | None) -> dict:
    return {name: version for name, version in (versions or {}).items() if name in GENERATION_VERSIONS}


def _problems(limit: int | None) -> float:
    """A limit as a number of problems: None is all of them."""
    return math.inf if limit is None else limit


@contextmanager
def exclusive(run_dir: Path):
    """Hold the run directory for one process: two writers appending to one samples file would mix."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"another ppa-eval is writing {run_dir}; wait for it to finish or use another --out") from None
        yield


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test."):
            pass
    except OSError as error:
        raise RunError(f"cannot write results to {directory}: {error.strerror}; choose another --out") from None


# --- reading and validating finished tasks ----------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_interval(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))


def _is_bucket(value) -> bool:
    return isinstance(value, dict) and all(_is_number(value.get(key)) for key in (
        "token_perplexity", "bits_per_byte", "tokens", "bytes", "n")) and \
        _is_interval(value.get("token_perplexity_ci95")) and _is_interval(value.get("bits_per_byte_ci95"))


# metrics.json keys the report cannot do without, per kind: the check each must pass, and what it expects.
_RUN_METRICS = {
    "task": (lambda v: isinstance(v, str) and v != "", "a task name"),
    "checkpoint": (lambda v: isinstance(v, str), "a string"),
    "attention": (lambda v: isinstance(v, str), 'a pattern spec such as "ppa:p=3/4,w=64"'),
    "n": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
}
_REQUIRED_METRICS = {
    "graded": {**_RUN_METRICS,
               "accuracy": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
               "ci95": (_is_interval, "[low, high]")},
    "scored": {**_RUN_METRICS,
               "by_length": (lambda v: isinstance(v, dict) and v and all(map(_is_bucket, v.values())),
                             "a table of length -> token_perplexity, bits_per_byte and their ci95")},
}


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunError(f"{path}: cannot read ({err.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: not valid JSON ({err}); re-run ppa-eval evaluate for this task") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_metrics(path: Path) -> dict:
    """A finished task's metrics, checked; `kind` is "graded" (answers; the default) or "scored"
    (perplexity), `pattern` its pattern, and `power` and `window` are p and w for PPA (None for other families)."""
    try:
        metrics = with_attention(_load_json(path))
    except PatternError as err:
        raise RunError(f"{path}: {err}") from None
    metrics.setdefault("kind", "graded")
    if metrics["kind"] not in _REQUIRED_METRICS:
        raise RunError(f"{path}: 'kind' must be one of {', '.join(_REQUIRED_METRICS)}, got {metrics['kind']!r}")
    for key, (valid, expected) in _REQUIRED_METRICS[metrics["kind"]].items():
        if key not in metrics:
            raise RunError(f"{path}: missing {key!r}; re-run ppa-eval evaluate for this task")
        if not valid(metrics[key]):
            raise RunError(f"{path}: {key!r} must be {expected}, got {metrics[key]!r}")
    try:
        pattern = parse_spec(metrics["attention"])
    except PatternError as err:
        raise RunError(f"{path}: {err}") from None
    fields = pattern.fields()
    return {**metrics, "pattern": pattern, "power": parse_power(fields["power"]) if "power" in fields else None,
            "window": fields.get("window")}


def read_verdicts(path: Path) -> dict[str, bool]:
    """doc_id -> correct, one entry per line of samples.jsonl (checked: ids unique, verdicts boolean)."""
    correct: dict[str, bool] = {}
    for number, sample in read_objects(path, RunError, "; paired tests need each run's samples"):
        doc_id, is_correct = sample.get("doc_id"), sample.get("correct")
        if not isinstance(doc_id, str):
            raise RunError(f"{path}, line {number}: 'doc_id' must be a string, got {doc_id!r}")
        if not isinstance(is_correct, bool):
            raise RunError(f"{path}, line {number}: 'correct' must be true or false, got {is_correct!r}")
        if doc_id in correct:
            raise RunError(f"{path}, line {number}: doc_id {doc_id!r} appears twice")
        correct[doc_id] = is_correct
    return correct
