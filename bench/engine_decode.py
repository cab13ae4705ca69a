"""The transformers engine on a GPU with the embedded model (SmolLM2-135M, 30 attention layers):
long-context problems generated with the engine's CUDA-graph decoding (ppa_eval/engines/hf_graph.py)
and with transformers' generate(), same prompts, same batch, same PPA kernels. Reports seconds per
batch (median of --rounds, the two ways taking turns), problems per minute, the verdicts of each,
and on how many problems the two responses are the same text.

    PYTHONPATH=. python bench/engine_decode.py [--lengths 2048,8192] [--powers 0,1/2,3/4,1] [--label h200]

Writes results/bench/engine_decode_<label>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from ppa_eval.engines import hf_attention
from ppa_eval.engines.embedded import embedded_checkpoint
from ppa_eval.engines.hf import HFEngine
from ppa_eval.patterns import PowerPattern
from ppa_eval.prompts import render_prompt
from ppa_eval.tasks import load_task

OUT = Path(__file__).resolve().parents[1] / "results" / "bench"
WINDOW = 64


def timed(engine, prompts, task, graph: bool):
    engine.graph_decode = graph
    torch.cuda.synchronize()
    start = time.perf_counter()
    generations = engine.generate_batch(prompts, task.max_gen_toks, task.stop)
    torch.cuda.synchronize()
    return time.perf_counter() - start, generations


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="passkey,niah_multikey")
    parser.add_argument("--lengths", default="2048,8192")
    parser.add_argument("--powers", default="0,1/2,3/4,1")
    parser.add_argument("--per-length", type=int, default=40, help="problems per (task, length): one batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="h200")
    args = parser.parse_args()

    engine = HFEngine(embedded_checkpoint(), PowerPattern(1, WINDOW), device="cuda")
    if not engine.graph_decode:
        raise SystemExit(f"the engine does not decode from CUDA graphs here (attention kernel {engine.attn_kernel})")
    rows = []
    for task_name in args.tasks.split(","):
        task = load_task(task_name)
        for length in map(int, args.lengths.split(",")):
            docs = task.generate(engine.tokenizer, [length], args.per_length, seed=0)
            prompts = [render_prompt(d["prompt"], engine.tokenizer, gen_prefix=d["answer_prefix"]) for d in docs]
            for power in args.powers.split(","):
                hf_attention.set_pattern(engine.model.config, PowerPattern(power, WINDOW))
                seconds, texts = {True: [], False: []}, {}
                for graph in (True, False):  # warm-up: compile every kernel shape of this length
                    timed(engine, prompts, task, graph)
                for _ in range(args.rounds):
                    for graph in (True, False):
                        elapsed, generations = timed(engine, prompts, task, graph)
                        seconds[graph].append(elapsed)
                        texts[graph] = [g.text for g in generations]
                right = {graph: sum(task.grader.grade(text, d["gold"]).correct for text, d in zip(texts[graph], docs))
                         for graph in (True, False)}
                row = {"task": task_name, "context_length": length, "power": power, "problems": len(docs),
                       "graph_s": statistics.median(seconds[True]), "generate_s": statistics.median(seconds[False]),
                       "graph_right": right[True], "generate_right": right[False],
                       "same_text": sum(a == b for a, b in zip(texts[True], texts[False]))}
                row["speedup"] = row["generate_s"] / row["graph_s"]
                row["graph_problems_per_min"] = 60 * len(docs) / row["graph_s"]
                print(row, flush=True)
                rows.append(row)
    table = pd.DataFrame(rows)
    device = f"{torch.cuda.get_device_name()}, {time.strftime('%Y-%m-%d')}"
    markdown = (f"# The transformers engine: CUDA-graph decode against generate() ({device})\n\n"
                f"Embedded SmolLM2-135M-Instruct, bf16, PPA kernels, w = {WINDOW}, one batch of {args.per_length} "
                f"problems per row, medians of {args.rounds} rounds.\n\n" + table.to_markdown(index=False, floatfmt=".3g") + "\n")
    print(markdown)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"engine_decode_{args.label}.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    (OUT / f"engine_decode_{args.label}.md").write_text(markdown)


if __name__ == "__main__":
    main()
