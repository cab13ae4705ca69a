"""A pattern family from outside the package, used the way a user would: tests/plugins/ppa_eval_dilated
is installed for real (pip, into a temporary directory put on the path), found through its entry
point in group `ppa_eval.patterns`, and then runs in `ppa-eval pattern`, in `evaluate` on the
embedded model on the sdpa and flex paths, and in vLLM's exact reference path, each checked
against the family's definition evaluated here pair by pair (test_pattern_families.dilated_matrix)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ppa_eval.patterns import families, parse_spec
from test_pattern_families import PLUGIN_SOURCE, dilated_matrix

pytestmark = pytest.mark.slow  # a pip install, then processes that load a model

# Not the repository root: there `python -m` would import the source tree instead of the installed package.
RUN_DIR = Path(__file__).resolve().parent
STRIDE, W, SINK = 3, 8, 2
SPEC = f"dilated:stride={STRIDE},w={W},sink={SINK}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The directory the toy family is installed into (pip builds in a copy: it writes next to its source)."""
    work = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(PLUGIN_SOURCE, work / "source")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(work / "site"), str(source)], check=True)
    return work / "site"


@pytest.fixture
def installed(site, monkeypatch):
    """The family installed in this process: its directory on sys.path, where importlib.metadata finds it."""
    monkeypatch.syspath_prepend(str(site))
    families.families.cache_clear()
    families.spellings.cache_clear()
    yield
    families.families.cache_clear()
    families.spellings.cache_clear()


def ppa_eval(site: Path, *args) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "ppa_eval.cli", *map(str, args)], capture_output=True, text=True,
                            cwd=RUN_DIR, env={**os.environ, "PYTHONPATH": path})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_pattern_command_equals_brute_force(site):
    length = 97
    matrix = dilated_matrix(STRIDE, W, SINK, length)
    out = json.loads(ppa_eval(site, "pattern", "--attention", SPEC, "--length", length, "--json").stdout)
    assert out["spec"] == SPEC
    assert out["relative_positions"] == [length - k for k in range(length - 1, -1, -1) if matrix[-1, k]]
    assert out["pairs"] == int(matrix.sum())
    per_query = matrix.sum(axis=1)
    assert out["keys_per_query"] == {"min": int(per_query.min()), "mean": float(per_query.mean()),
                                     "max": int(per_query.max())}


def greedy_under(model, ids: torch.Tensor, mask_of, steps: int) -> list[int]:
    """Greedy tokens of the stock model, every step a full forward under mask_of(length) [L, L]."""
    new = []
    with torch.no_grad():
        for _ in range(steps):
            mask = torch.as_tensor(mask_of(ids.shape[1]))[None, None]
            token = model(ids, attention_mask=mask).logits[0, -1].argmax()
            new.append(int(token))
            ids = torch.cat([ids, token.view(1, 1)], dim=1)
    return new


@pytest.mark.parametrize("kernel", ["sdpa", "flex"])
def test_evaluate_on_the_embedded_model_equals_the_stock_model_under_brute_force(site, kernel, tmp_path,
                                                                                 embedded_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = 6
    ppa_eval(site, "evaluate", "--attention", SPEC, "--attn-kernel", kernel, "--tasks", "passkey",
             "--context-lengths", 256, "--limit", 1, "--batch-size", 1, "--max-new-tokens", steps, "--out", tmp_path)
    run = tmp_path / "SmolLM2-135M-Instruct__dilated_stride3_w8_sink2"
    assert json.loads((run / "manifest.json").read_text())["attention"] == SPEC
    sample = json.loads((run / "passkey" / "samples.jsonl").read_text().splitlines()[0])

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(embedded_checkpoint, dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    ids = tokenizer(sample["prompt"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    expected = greedy_under(model, ids, lambda n: dilated_matrix(STRIDE, W, SINK, n), steps)
    full = greedy_under(model, ids, lambda n: np.tril(np.ones((n, n), dtype=bool)), steps)
    assert expected != full  # the pattern changes what the model says, so the comparison can fail
    eos = next((i for i, token in enumerate(expected) if token == tokenizer.eos_token_id), steps)
    assert sample["response"] == tokenizer.decode(expected[:eos], skip_special_tokens=True)


def test_vllm_reference_path_equals_brute_force(installed, monkeypatch):
    pytest.importorskip("vllm")
    from ppa_eval.engines.vllm_backend import kernels_apply
    from test_vllm_backend import check_backend

    pattern = parse_spec(SPEC)
    assert not kernels_apply("cuda", torch.bfloat16, 128, pattern)  # no Triton kernels declared: the exact path
    monkeypatch.setenv("PPA_EVAL_ATTENTION", SPEC)
    attends = dilated_matrix(STRIDE, W, SINK, 256)
    check_backend(SPEC, lambda i, k: bool(attends[i, k]), "blocks-heads-page-2dim")
