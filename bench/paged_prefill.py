"""One vLLM prefill chunk's attention over a paged cache (prefill.prefill, the kernels the plug-in
launches for a step's chunks, here with one chunk and no program table), against dense causal
attention, at the shapes of bench/vllm_throughput.py's long-context workloads.

    PYTHONPATH=. python bench/paged_prefill.py [--out results/bench]

Per case: GPU time (triton.testing.do_bench) of the call at the cost model's split and at every
candidate split (the best one shows whether the model, fitted at head 128, picks well at head 64),
and dense SDPA (is_causal) on the same chunk as a contiguous cache. The host's share of a vLLM
step is measured inside vLLM instead (bench/vllm_step_times.py). Writes paged_prefill.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

from ppa_eval.kernels.cost_model import candidate_splits, choose_split, costs_for
from ppa_eval.kernels.prefill import prefill
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.patterns import PowerPattern

PAGE = 16
CASES = [  # name, query heads, KV heads, head size, chunk queries, sequence length
    ("smollm2-135m, whole prompt", 9, 3, 64, 7675, 7675),
    ("llama-8b, half a prompt", 32, 8, 128, 8192, 8192),
    ("llama-8b, whole prompt", 32, 8, 128, 16384, 16384),
]  # whole sequences only: torch's dense causal kernels align the diagonal top-left


def case(name, heads, kv_heads, head_dim, n_queries, seq_len, power):
    pattern = PowerPattern(power, 64)
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, heads, n_queries, head_dim, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, kv_heads, seq_len, head_dim, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn_like(k)
    pages = -(-seq_len // PAGE)
    block_table = torch.randperm(pages, device="cuda", generator=gen).to(torch.int32)[None]
    k_cache = torch.empty(pages, PAGE, kv_heads, head_dim, device="cuda", dtype=torch.bfloat16)
    v_cache = torch.empty_like(k_cache)
    padded = pages * PAGE - seq_len
    k_cache[block_table[0].long()] = F.pad(k[0], (0, 0, 0, padded)).transpose(0, 1).reshape(pages, PAGE, kv_heads, head_dim)
    v_cache[block_table[0].long()] = F.pad(v[0], (0, 0, 0, padded)).transpose(0, 1).reshape(pages, PAGE, kv_heads, head_dim)
    out = torch.empty_like(q)
    tables = offset_tables(pattern, seq_len, "cuda")
    scale = head_dim**-0.5

    def paged(split=None):
        return prefill(q, k_cache, v_cache, out, tables, scale, block_table=block_table, kv_len=seq_len, split=split)

    chosen = choose_split(tables, ((n_queries, seq_len),), (64, 64), heads, kv_heads, costs_for(q.device))
    by_split = {split: triton.testing.do_bench(lambda s=split: paged(s)) for split in candidate_splits(tables.window, seq_len)}
    dense = triton.testing.do_bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
    best = min(by_split, key=by_split.get)
    return {
        "case": name, "power": power, "heads": f"{heads}/{kv_heads} x {head_dim}", "queries": n_queries, "seq_len": seq_len,
        "ppa_ms": round(by_split[chosen], 4), "chosen_split": chosen, "best_split": best, "best_ms": round(by_split[best], 4),
        "dense_ms": round(dense, 4), "vs_dense": round(by_split[chosen] / dense, 3),
        "by_split_ms": {str(s): round(t, 4) for s, t in by_split.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    rows = [case(*c, power) for c in CASES for power in ("1/2", "3/4")]
    header = f"# One vLLM prefill chunk ({torch.cuda.get_device_name()}, {datetime.date.today()}; bf16, w = 64, page {PAGE})"
    lines = [header, "", "| case | p | heads x size | queries / length | PPA ms (split) | best split ms (split) | "
             "dense ms | vs dense |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['power']} | {r['heads']} | {r['queries']} / {r['seq_len']} | {r['ppa_ms']} ({r['chosen_split']}) | "
              f"{r['best_ms']} ({r['best_split']}) | {r['dense_ms']} | {r['vs_dense']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paged_prefill.md").write_text(text)
    (args.out / "paged_prefill.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
