"""vLLM throughput, the PPA plug-in against stock vLLM, on models of real shapes with random weights.

    python bench/vllm_throughput.py WORKLOAD --engine stock|ppa [--power 1/2] [--eager] [--repeats N] [--out D]
    python bench/vllm_throughput.py table [--out D]

Workloads (token-id prompts, a fixed number of new tokens each, EOS ignored):
  nano-9b-v2    NVIDIA-Nemotron-Nano-9B-v2's shape (4 attention layers of 56), 256 x (1,500 + 512):
                the evaluation's shape (few-shot prompts, short answers)
  smollm2-135m  the embedded model's shape (SmolLM2-135M-Instruct, 30 attention layers), 64 x (7,675 + 128)
  llama-8b      Llama-3.1-8B's shape (32 attention layers), 64 x (16,384 + 256)
Random weights (vLLM's load_format="dummy") do the same work as real ones when every request
generates a fixed number of tokens, and need no checkpoint: the model directory holds its config
alone. Each run is one engine in one process (each takes most of the GPU) and writes
OUT/vllm_throughput_{workload}_{gpu}_{engine}[_p{power}][_eager].json; `table` collects them into
OUT/vllm_throughput.md, each PPA row against stock in the same workload, mode and GPU.
--repeats N times N generates, each on its own prompts (vLLM's prefix cache would skip a prompt it
has seen), and reports the median: a SmolLM2 run lasts 1-5 s, and seven compiled PPA runs of one
hour took 1.57-2.39 s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

from ppa_eval.engines.vllm_engine import VLLMOptions, engine_arguments
from ppa_eval.patterns import PowerPattern

WINDOW = 64
# vLLM captures CUDA graphs for steps of up to 512 tokens by default (decode batches, short mixed
# steps). These sizes add every multiple of 1,024 up to the step's token budget (16,384 here), so
# that steps with long prefill chunks replay the layers between the attention calls as piecewise
# graphs too; attention runs outside the graphs in both engines.
PREFILL_GRAPH_SIZES = [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16), *range(1024, 16385, 1024)]
# FlashInfer's top-k/top-p sampler compiles with nvcc when an engine first starts on a machine
# (engines on a fresh H200 were still compiling after 100 s, 2026-12-02); greedy decoding never uses it.
os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")


@dataclass(frozen=True)
class Workload:
    config: dict            # the model's config.json
    prompts: int
    prompt_tokens: int
    new_tokens: int
    max_model_len: int | None = None  # None: the model's own


NANO_9B_V2 = dict(  # config.json of nvidia/NVIDIA-Nemotron-Nano-9B-v2 (see ../shared/NOTES.md)
    vocab_size=131072, hidden_size=4480, intermediate_size=15680, tie_word_embeddings=False,
    hybrid_override_pattern="M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-",
    num_attention_heads=40, num_key_value_heads=8, head_dim=128, attention_bias=False,
    mamba_num_heads=128, mamba_head_dim=80, n_groups=8, ssm_state_size=128, conv_kernel=4,
    layer_norm_epsilon=1e-5, mlp_hidden_act="relu2", bos_token_id=1, eos_token_id=2, pad_token_id=12,
    max_position_embeddings=131072,
)  # bench/vllm_nemotron.py builds NemotronHConfig(**NANO_9B_V2) from it
SMOLLM2_135M = dict(  # the embedded model's config.json, as transformers converts its GGUF
    model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=49152, hidden_size=576,
    intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
    hidden_act="silu", max_position_embeddings=8192, rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
)
LLAMA_8B = dict(  # meta-llama/Llama-3.1-8B's shape (rope without the long-context scaling: same work)
    model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=128256, hidden_size=4096,
    intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
    hidden_act="silu", max_position_embeddings=131072, rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001,
)
WORKLOADS = {
    "nano-9b-v2": Workload(dict(NANO_9B_V2, model_type="nemotron_h", architectures=["NemotronHForCausalLM"]),
                           prompts=256, prompt_tokens=1500, new_tokens=512),
    "smollm2-135m": Workload(SMOLLM2_135M, prompts=64, prompt_tokens=7675, new_tokens=128),
    "llama-8b": Workload(LLAMA_8B, prompts=64, prompt_tokens=16384, new_tokens=256, max_model_len=16640),
}


def random_prompts(n: int, length: int, vocab_size: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(100, vocab_size, (n, length), generator=generator).tolist()


def engine(directory: Path, name: str, power: str, eager: bool, dtype: str = "bfloat16", tensor_parallel_size: int = 1,
           max_model_len: int | None = None, prefill_graphs: bool = False, **extra):
    """vllm.LLM without a tokenizer (token-id prompts): stock vLLM, or the plug-in at p = power,
    w = WINDOW. Both take the engine's arguments (ppa_eval.engines.vllm_engine), stock without the
    pattern; prefill_graphs: capture PREFILL_GRAPH_SIZES; `extra` goes to vllm.LLM as it is."""
    import vllm

    if prefill_graphs:
        extra["compilation_config"] = {"cudagraph_capture_sizes": PREFILL_GRAPH_SIZES}

    pattern = PowerPattern(power, WINDOW)
    options = VLLMOptions(enforce_eager=eager, tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len)
    arguments = engine_arguments(directory, pattern, "cuda", dtype, 0, options)
    if name == "stock":
        del arguments["hf_overrides"]  # the pattern: without it, vLLM's own attention everywhere
    return vllm.LLM(**arguments, skip_tokenizer_init=True, **extra)


def warm_up(llm, workload: Workload) -> None:
    """A short generate on other prompts (vLLM's prefix cache would otherwise skip the prefill of
    those it saw), so that the timed ones find the kernels compiled."""
    import vllm

    prompts = random_prompts(4, workload.prompt_tokens, workload.config["vocab_size"], seed=1)
    llm.generate([{"prompt_token_ids": p} for p in prompts],
                 vllm.SamplingParams(temperature=0, max_tokens=8, detokenize=False), use_tqdm=False)


def gpu_label(gpu_name: str) -> str:
    """The short GPU name in result file names: NVIDIA H200 -> h200."""
    return gpu_name.split()[-1].lower()


def run(workload_name: str, name: str, power: str, eager: bool, out_dir: Path, repeats: int = 1) -> Path:
    import vllm
    from transformers import AutoConfig

    workload = WORKLOADS[workload_name]
    with tempfile.TemporaryDirectory() as directory:
        AutoConfig.for_model(**workload.config).save_pretrained(directory)
        start = time.perf_counter()
        llm = engine(Path(directory), name, power, eager, max_model_len=workload.max_model_len, load_format="dummy")
        started = time.perf_counter() - start
        warm_up(llm, workload)
        params = vllm.SamplingParams(temperature=0, max_tokens=workload.new_tokens, ignore_eos=True, detokenize=False)
        runs = []
        for seed in range(2, 2 + repeats):  # seed 2 first: the prompts of a single run as before
            token_ids = random_prompts(workload.prompts, workload.prompt_tokens, workload.config["vocab_size"], seed)
            start = time.perf_counter()
            outputs = llm.generate([{"prompt_token_ids": p} for p in token_ids], params)
            runs.append(time.perf_counter() - start)
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)  # the same in every run (EOS ignored)
    seconds = statistics.median(runs)

    result = {
        "workload": workload_name, "engine": name, "power": power if name == "ppa" else None, "window": WINDOW,
        "eager": eager, "prompts": workload.prompts, "prompt_tokens": workload.prompt_tokens,
        "new_tokens": workload.new_tokens, "date": str(datetime.date.today()),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "vllm": vllm.__version__, "engine_start_s": round(started, 1), "seconds": round(seconds, 2),
        "runs_s": [round(r, 2) for r in runs],
        "generated_tokens": generated, "generated_tokens_per_s": round(generated / seconds, 1),
        "total_tokens_per_s": round((generated + workload.prompts * workload.prompt_tokens) / seconds, 1),
    }
    path = out_dir / result_name(result)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return path


def result_name(result: dict) -> str:
    """vllm_throughput_{workload}_{gpu}_{engine}[_p{power}][_eager].json, e.g. ..._llama-8b_h200_ppa_p1-2_eager.json"""
    gpu = gpu_label(result["gpu"])
    power = f"_p{str(Fraction(result['power'])).replace('/', '-')}" if result["engine"] == "ppa" else ""
    return f"vllm_throughput_{result['workload']}_{gpu}_{result['engine']}{power}{'_eager' if result['eager'] else ''}.json"


def table(out_dir: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out_dir.glob("vllm_throughput_*.json"))]
    stock = {(r["workload"], r["eager"], r["gpu"]): r for r in rows if r["engine"] == "stock"}
    lines = ["vLLM throughput, the PPA plug-in (w = 64) against stock vLLM (`bench/vllm_throughput.py`; random "
             "weights, token-id prompts, EOS ignored)", "",
             "| workload | prompts x (prompt + new) | GPU, date | mode | engine | start (s) | generation (s) | "
             "generated tok/s | vs stock |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["workload"], r["gpu"], r["eager"], r["engine"] != "stock", r["date"])):
        base = stock.get((r["workload"], r["eager"], r["gpu"]))
        ratio = f"{r['generated_tokens_per_s'] / base['generated_tokens_per_s']:.2f}x" if base else ""
        name = f"PPA p = {r['power']}" if r["engine"] == "ppa" else "stock"
        runs = r.get("runs_s", [])
        seconds = f"{r['seconds']} (median of {len(runs)}: {min(runs)}-{max(runs)})" if len(runs) > 1 else r["seconds"]
        lines.append(f"| {r['workload']} | {r['prompts']} x ({r['prompt_tokens']:,} + {r['new_tokens']}) | "
                     f"{r['gpu']}, {r['date']} | {'eager' if r['eager'] else 'compiled + CUDA graphs'} | {name} | "
                     f"{r['engine_start_s']} | {seconds} | {r['generated_tokens_per_s']:,} | {ratio} |")
    lines += ["", "Compiled: decode-only steps run as full CUDA graphs in both backends; steps with prefills run "
              "piecewise, attention outside the graphs. A start time includes Triton's first compilation when "
              "the engine was the first of its model on a fresh machine."]
    text = "\n".join(lines) + "\n"
    (out_dir / "vllm_throughput.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=[*WORKLOADS, "table"])
    parser.add_argument("--engine", choices=["ppa", "stock"], default="ppa")
    parser.add_argument("--power", default="1/2", help="the PPA exponent (default 1/2)")
    parser.add_argument("--eager", action="store_true", help="no torch.compile or CUDA graphs (faster start)")
    parser.add_argument("--repeats", type=int, default=1, help="timed generates, each on its own prompts (median)")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.workload == "table":
        print(table(args.out))
        return
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    run(args.workload, args.engine, args.power, args.eager, args.out, args.repeats)
    sys.stdout.flush()
    os._exit(0)  # the result is written; vLLM 0.24's engine teardown can abort the process


if __name__ == "__main__":
    main()
