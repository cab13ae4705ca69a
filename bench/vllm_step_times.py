"""Where a vLLM generation spends its time, step by step: PPA plug-in against stock vLLM, in one process.

    python bench/vllm_step_times.py ENGINE [--workload smollm2-135m] [--power 1/2] [--prefill-graphs] [--out results/bench]
    python bench/vllm_step_times.py table [--out results/bench]

The workloads of bench/vllm_throughput.py (random weights, compiled with CUDA graphs), with the
engine in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so that timers wrap its methods: the
host time of each model step (execute_model), split into steps with a prefill chunk ("mixed")
and decode-only steps; inside them the attention backend's forward calls and its metadata
builder. Three generates on fresh prompts: two as served (the host runs ahead of the GPU where it
can), one with a CUDA sync after every step (then a step's time is its host and GPU time in
series). Host time that matches the synced time means the host was the bottleneck.
--prefill-graphs: CUDA graphs for steps with prefill chunks too (vllm_throughput.PREFILL_GRAPH_SIZES).
Writes vllm_step_times_{workload}_{gpu}_{engine}[_prefill-graphs].json; `table` collects them into
vllm_step_times.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # before vllm is imported

import torch  # noqa: E402

from vllm_throughput import WORKLOADS, engine, gpu_label, random_prompts, warm_up  # noqa: E402


def wrap(owner, method: str, key: str, stats: dict, state: dict) -> None:
    """Add the host time of every call of owner.method to stats[key + kind], kind the current step's."""
    original = getattr(owner, method)

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            stats[f"{key}_{state['kind']}_s"] += time.perf_counter() - start
            stats[f"{key}_{state['kind']}_calls"] += 1

    setattr(owner, method, timed)


def instrument(name: str, stats: dict, state: dict) -> None:
    import vllm.v1.worker.gpu.model_runner as model_runner  # vLLM 0.24's GPU model runner

    runner = next(c for c in vars(model_runner).values()
                  if isinstance(c, type) and c.__module__ == model_runner.__name__ and "execute_model" in vars(c))
    execute = runner.execute_model

    def step(self, scheduler_output, *args, **kwargs):
        tokens = list(scheduler_output.num_scheduled_tokens.values())
        state["kind"] = "mixed" if any(n > 1 for n in tokens) else "decode"
        start = time.perf_counter()
        out = execute(self, scheduler_output, *args, **kwargs)
        if state["sync"]:
            torch.cuda.synchronize()
        stats[f"step_{state['kind']}_s"] += time.perf_counter() - start
        stats[f"step_{state['kind']}_calls"] += 1
        return out

    runner.execute_model = step
    if name == "ppa":
        from ppa_eval.engines.vllm_backend import PPAAttentionImpl as impl, PPAMetadataBuilder as builder
    else:
        from vllm.v1.attention.backends.flash_attn import FlashAttentionImpl as impl, FlashAttentionMetadataBuilder as builder
    wrap(impl, "forward", "attention", stats, state)
    wrap(builder, "build", "build", stats, state)


def run(workload_name: str, name: str, power: str, prefill_graphs: bool, out_dir: Path) -> None:
    import vllm
    from transformers import AutoConfig

    workload = WORKLOADS[workload_name]
    stats, state = collections.defaultdict(float), {"kind": "decode", "sync": False}
    instrument(name, stats, state)
    runs = []
    with tempfile.TemporaryDirectory() as directory:
        AutoConfig.for_model(**workload.config).save_pretrained(directory)
        llm = engine(Path(directory), name, power, False, max_model_len=workload.max_model_len,
                     prefill_graphs=prefill_graphs, load_format="dummy")
        warm_up(llm, workload)
        vocab = workload.config["vocab_size"]
        params = vllm.SamplingParams(temperature=0, max_tokens=workload.new_tokens, ignore_eos=True, detokenize=False)
        for seed, sync in ((2, False), (3, False), (4, True)):
            stats.clear()
            state["sync"] = sync
            prompts = random_prompts(workload.prompts, workload.prompt_tokens, vocab, seed)
            start = time.perf_counter()
            llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
            runs.append({"synced": sync, "wall_s": round(time.perf_counter() - start, 3),
                         **{k: round(v, 4) for k, v in sorted(stats.items())}})
            print(json.dumps(runs[-1]), flush=True)
    result = {"workload": workload_name, "engine": name, "power": power if name == "ppa" else None,
              "prefill_graphs": prefill_graphs, "date": str(datetime.date.today()), "gpu": torch.cuda.get_device_name(),
              "vllm": vllm.__version__, "runs": runs}
    suffix = "_prefill-graphs" if prefill_graphs else ""
    path = out_dir / f"vllm_step_times_{workload_name}_{gpu_label(result['gpu'])}_{name}{suffix}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")


def table(out_dir: Path) -> str:
    lines = ["# vLLM step times: host seconds per kind of step (`bench/vllm_step_times.py`; compiled, CUDA graphs, "
             "in-process engine)", "",
             "| workload | GPU, date | CUDA graphs | engine | run | wall s | mixed steps: n, s | "
             "their attention calls: n, s | builds s | decode steps: n, s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(out_dir.glob("vllm_step_times_*.json")):
        r = json.loads(path.read_text())
        name = f"PPA p = {r['power']}" if r["engine"] == "ppa" else "stock"
        for i, run_ in enumerate(r["runs"]):
            g = run_.get
            graphs = "all steps" if r.get("prefill_graphs") else "up to 512 tokens"
            lines.append(f"| {r['workload']} | {r['gpu']}, {r['date']} | {graphs} | {name} | "
                         f"{'synced' if run_['synced'] else i + 1} | "
                         f"{run_['wall_s']} | {g('step_mixed_calls', 0):.0f}, {g('step_mixed_s', 0)} | "
                         f"{g('attention_mixed_calls', 0):.0f}, {g('attention_mixed_s', 0)} | "
                         f"{round(g('build_mixed_s', 0) + g('build_decode_s', 0), 4)} | "
                         f"{g('step_decode_calls', 0):.0f}, {g('step_decode_s', 0)} |")
    text = "\n".join(lines) + "\n"
    (out_dir / "vllm_step_times.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["ppa", "stock", "table"])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="smollm2-135m")
    parser.add_argument("--power", default="1/2", help="the PPA exponent (default 1/2)")
    parser.add_argument("--prefill-graphs", action="store_true", help="CUDA graphs for steps with prefill chunks too")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.engine == "table":
        print(table(args.out))
        return
    run(args.workload, args.engine, args.power, args.prefill_graphs, args.out)
    sys.stdout.flush()
    os._exit(0)  # the result is written; vLLM 0.24's engine teardown can abort the process


if __name__ == "__main__":
    main()
