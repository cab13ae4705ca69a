"""Resuming a run: each problem counted once, a failed start blocks nothing, a run may grow.

The engine here is a stand-in whose answer to a prompt names the batch it was generated in, so
a resumed run that batched its problems differently from an uninterrupted one shows in the
samples, not only one that lost or repeated a problem.
"""

import json
from hashlib import sha256

import pytest

from ppa_eval.engines import EngineError, Generation
from ppa_eval.evaluate import evaluate
from ppa_eval.patterns import parse_spec
from ppa_eval.runs import RunError
from ppa_eval.settings import Settings

PATTERN = parse_spec("ppa:p=1/2,w=8")


class BatchNamingEngine:
    tokenizer = None  # prompts are used as they are (chat_template "none")
    dtype = "float32"

    def __init__(self, calls: list):
        self.calls = calls

    def generate_batch(self, prompts, max_new_tokens, stop=()):
        self.calls.append(list(prompts))
        batch = sha256("\0".join(prompts).encode()).hexdigest()[:12]
        return [Generation(text=f"batch {batch}, row {row}. #### {row}", finish_reason="stop",
                           prompt_tokens=len(prompt), completion_tokens=5) for row, prompt in enumerate(prompts)]

    def close(self):
        pass


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "ckpt"
    path.mkdir()
    # a real model config (the cost columns read its attention shape); the stand-in engine loads no weights
    (path / "config.json").write_text('{"model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2, '
                                      '"hidden_size": 64}')
    return path


def run(checkpoint, out, limit, batch_size=4, calls=None, **settings):
    calls = [] if calls is None else calls
    settings = Settings(tasks=["gsm8k"], limit=limit, batch_size=batch_size, chat_template="none",
                        max_new_tokens=8, **settings)
    return evaluate(checkpoint, "ckpt", PATTERN, settings, out, lambda *_: BatchNamingEngine(calls))


def samples(run_dir):
    """What a run computed, without its timings."""
    lines = (run_dir / "gsm8k" / "samples.jsonl").read_text().splitlines()
    return [{key: value for key, value in json.loads(line).items() if key != "generation_s"} for line in lines]


def n(run_dir):
    return json.loads((run_dir / "gsm8k" / "metrics.json").read_text())["n"]


@pytest.mark.slow
@pytest.mark.parametrize("limit, whole_lines, torn_bytes", [(16, 6, 300), (8, 5, 100)])
def test_a_torn_batch_is_generated_again_and_counted_once(checkpoint, tmp_path, limit, whole_lines, torn_bytes):
    clean = run(checkpoint, tmp_path / "clean", limit)
    torn = run(checkpoint, tmp_path / "torn", limit)
    # a short write inside batch 2: its first lines whole, the next one cut
    (torn / "gsm8k" / "metrics.json").unlink()
    path = torn / "gsm8k" / "samples.jsonl"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"".join(line + b"\n" for line in lines[:whole_lines]) + lines[whole_lines][:torn_bytes])
    run(checkpoint, tmp_path / "torn", limit)
    assert samples(torn) == samples(clean)  # each problem once, in the batches of the uninterrupted run
    assert len({s["doc_id"] for s in samples(torn)}) == n(torn) == limit


@pytest.mark.slow
def test_a_failed_start_leaves_the_directory_to_the_corrected_command(checkpoint, tmp_path):
    def broken(*_):
        raise EngineError("the model does not load")

    settings = Settings(tasks=["gsm8k"], limit=2, batch_size=2, chat_template="none", max_new_tokens=99)
    with pytest.raises(EngineError):
        evaluate(checkpoint, "ckpt", PATTERN, settings, tmp_path / "out", broken)
    run_dir = run(checkpoint, tmp_path / "out", 2)  # other settings (max_new_tokens 8): nothing was computed
    assert json.loads((run_dir / "manifest.json").read_text())["max_new_tokens"] == 8 and n(run_dir) == 2


@pytest.mark.slow
def test_a_run_grows_by_its_new_problems_only(checkpoint, tmp_path):
    calls = []
    quick = run(checkpoint, tmp_path / "grown", 4, calls=calls)
    first = samples(quick)
    calls.clear()
    grown = run(checkpoint, tmp_path / "grown", 6, calls=calls)
    assert sum(map(len, calls)) == 2  # the two new problems, nothing recomputed
    assert samples(grown)[:4] == first and n(grown) == 6
    assert sorted(s["doc_id"] for s in samples(grown)) == [f"test-{i}" for i in range(6)]
    assert json.loads((grown / "manifest.json").read_text())["limit"] == 6
    # the new problems were batched among themselves; a resumed growth ends the same way
    torn = run(checkpoint, tmp_path / "torn", 4)
    path = torn / "gsm8k" / "samples.jsonl"
    run(checkpoint, tmp_path / "torn", 6)
    path.write_bytes(b"".join(line + b"\n" for line in path.read_bytes().splitlines()[:5]))  # one of the 2 new kept
    (torn / "gsm8k" / "metrics.json").unlink()
    run(checkpoint, tmp_path / "torn", 6)
    assert samples(torn) == samples(grown)
    with pytest.raises(RunError, match="limit: 6 -> 4: a run may grow, not shrink"):
        run(checkpoint, tmp_path / "grown", 4)


def test_the_manifest_keeps_the_format_older_runs_have(checkpoint, tmp_path):
    """A run made before settings.py owned the settings resumes: the same keys, the same values."""
    manifest = json.loads((run(checkpoint, tmp_path / "out", 2, batch_size=2) / "manifest.json").read_text())
    assert sorted(manifest) == sorted([
        "checkpoint", "checkpoint_sha256", "attention", "power", "window", "engine", "engine_options", "dtype",
        "attn_kernel", "device", "batch_size", "max_new_tokens", "limit", "chat_template", "thinking", "data_source",
        "seed", "context_lengths", "generated_sha256", "tasks", "versions"])
    assert {key: manifest[key] for key in ("engine", "engine_options", "dtype", "attn_kernel", "device", "batch_size",
                                           "max_new_tokens", "limit", "chat_template", "thinking", "data_source",
                                           "seed", "context_lengths")} == {
        "engine": "hf", "engine_options": {}, "dtype": "float32", "attn_kernel": "sdpa", "device": "cpu",
        "batch_size": 2, "max_new_tokens": 8, "limit": 2, "chat_template": "none", "thinking": "off",
        "data_source": "vendored", "seed": 1234, "context_lengths": None}
    assert json.loads((tmp_path / "out" / "ckpt__p1-2_w8" / "gsm8k" / "metrics.json").read_text())["limit"] == 2
