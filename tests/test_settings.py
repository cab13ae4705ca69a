"""The run settings, defined once in ppa_eval.settings: what the command line, the manifest and the
resume check make of them, checked against the format runs on disk already have."""

from pathlib import Path

import pytest

from ppa_eval.cli import build_parser, evaluate_command
from ppa_eval.evaluate import resolved
from ppa_eval.patterns import parse_spec
from ppa_eval.runs import RESULT_SETTINGS
from ppa_eval.settings import Settings, manifest_entries, parse_flags

PATTERN = parse_spec("ppa:p=1/2,w=64")


def test_a_resumed_run_is_checked_on_the_keys_it_always_was():
    assert sorted(RESULT_SETTINGS) == sorted([
        "checkpoint_sha256", "attention", "engine", "dtype", "attn_kernel", "batch_size", "max_new_tokens",
        "chat_template", "thinking", "data_source", "seed", "tasks", "context_lengths", "generated_sha256", "versions"])


@pytest.mark.parametrize("engine, recorded", [
    ("hf", {"attn_kernel": "sdpa", "batch_size": 8}),
    ("vllm", {"attn_kernel": "vllm-ppa", "batch_size": 256}),  # the values every vLLM run has recorded
])
def test_each_engine_records_its_own_attention_and_batch_size(engine, recorded):
    entries = manifest_entries(resolved(Settings(engine=engine), PATTERN, Path("not-read-on-the-cpu")))
    assert entries == {"engine": engine, "engine_options": {}, "dtype": "float32", "device": "cpu",
                       "max_new_tokens": None, "limit": None, "chat_template": "auto", "thinking": "off",
                       "data_source": "vendored", "seed": 1234, "context_lengths": None, **recorded}


def test_flags_the_user_leaves_out_take_the_settings_defaults():
    assert Settings(**parse_flags(vars(build_parser().parse_args(["evaluate"])))) == Settings()


def test_a_gpu_sweeps_workers_get_the_settings_the_sweep_was_given(tmp_path):
    from ppa_eval.checkpoints import Checkpoint

    flags = ["--tasks", "gsm8k,passkey", "--limit", "3", "--context-lengths", "2048,1024", "--max-new-tokens", "9",
             "--chat-template", "none", "--thinking", "on", "--data-source", "hub", "--seed", "7", "--engine", "vllm",
             "--device", "cuda:1", "--dtype", "bfloat16", "--batch-size", "5", "--enforce-eager"]
    sweep = build_parser().parse_args(["sweep", str(tmp_path), *flags])
    worker = build_parser().parse_args(evaluate_command(sweep, Checkpoint(tmp_path, PATTERN, "m"), tmp_path)[3:])
    given = parse_flags(vars(sweep))
    assert given == {"tasks": ["gsm8k", "passkey"], "limit": 3, "context_lengths": [1024, 2048], "max_new_tokens": 9,
                     "chat_template": "none", "thinking": "on", "data_source": "hub", "seed": 7, "engine": "vllm",
                     "device": "cuda:1", "dtype": "bfloat16", "batch_size": 5}
    assert parse_flags(vars(worker)) == {**given, "device": "cuda"}  # each worker sees its one GPU as cuda
    assert worker.enforce_eager
