"""The prefill cost model's constants, measured: time PPA prefill at every split the model can
choose, fit the constants of ppa_eval/kernels/cost_model.py, and check its choices.

Two grids, every case at every candidate split, each output compared with the all-tiles output:
  - whole sequences: bench/attention.py's prefill grid (40 query / 8 KV heads, head 128, a
    contiguous cache), p = 0 to 7/8;
  - vLLM chunks: the last n of L tokens (n = 16, 256, 2,048; L = 2,048 to 16,384) from a paged
    cache, at the embedded model's heads (9 / 3, head 64) and Nano-9B-v2's (40 / 8, head 128),
    p = 1/2 and 3/4.
Times are scaled to head size 128 (the model's unit). Non-negative least-squares fits (relative
error, so short and long cases weigh alike):
  - throughput, on the whole sequences: tile pairs, gathered pairs, gathered rows. Fitted with
    the 2,048-query chunks as well, the constants came out some 20% above the whole sequences'
    times (head-64 chunks run slower than the head scaling says), which made FlashAttention-4
    look cheaper than it is beside the Triton plan;
  - latency, on the 16-query chunks (a few programs walking long rows): keys walked by the longest
    tile program, far distances walked by the longest gather program.
Where FlashAttention-4 runs (flash4.py), each whole sequence is also timed on its masked kernel,
and its two constants (per tile visited and per query tile, each per query head) are fitted on
those rows alone.
Then, per case: the fastest plan measured (a split, or flash4), the one the fitted model picks,
and the time lost by picking it. Writes prefill_costs[_LABEL].json and .md; the fit goes into
cost_model.FITS under the GPU's name by hand.

    PYTHONPATH=. python bench/prefill_costs.py [--out results/bench] [--label h100]   # measure (GPU) and fit
    PYTHONPATH=. python bench/prefill_costs.py --refit [--out ...] [--label ...]     # fit the rows already in the json
    --chunk-queries 16: only the chunks the latency constants are fitted on (a shorter run)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np

from ppa_eval.kernels import cost_model

WINDOW, PAGE = 64, 16
WHOLE = dict(heads=(40, 8, 128), shapes=[(2048, 8), (8192, 2), (32768, 1)], powers=["0", "1/2", "3/4", "7/8"])
CHUNKS = dict(heads=[(9, 3, 64), (40, 8, 128)], queries=[16, 256, 2048], lengths=[2048, 8192, 16384],
              powers=["1/2", "3/4"])
THROUGHPUT = ("tile_pairs", "gathered_pairs", "gathered_rows")
LATENCY = ("tile_walk", "gather_walk")
CONSTANTS = {"tile_pairs": "tile_pair", "gathered_pairs": "gathered_pair", "gathered_rows": "gathered_row",
             "tile_walk": "tile_walked_key", "gather_walk": "gather_walked_distance", "flash4_tiles": "flash4_tile",
             "flash4_query_tiles": "flash4_query_tile"}  # Work's fields (and FA4's) -> cost_model.Costs' fields
FLASH4 = "flash4"  # the split column of FlashAttention-4's rows


def measure(chunk_queries: list[int], rows: list[dict]) -> None:
    """Time every case at every split into `rows` (kept up to an interruption: Ctrl-C, timeout -s INT)."""
    import torch
    from attention import timed_ms  # the attention benchmark's timer

    from ppa_eval.kernels import flash4, prefill
    from ppa_eval.kernels.reference import relative_error
    from ppa_eval.kernels.tables import offset_tables
    from ppa_eval.patterns import PowerPattern

    shape = prefill.TileShape()

    def randn(*size):
        return torch.randn(*size, device="cuda", dtype=torch.bfloat16)

    def case(kind, q, k, v, length, power, block_table=None):
        batch, n_q_heads, n_queries, head_dim = q.shape
        n_kv_heads = k.shape[1] if block_table is None else k.shape[2]
        tables = offset_tables(PowerPattern(power, WINDOW), length, "cuda")
        out = torch.empty_like(q)

        def run(split):
            return prefill.prefill(q, k, v, out, tables, head_dim**-0.5, block_table=block_table, kv_len=length,
                                   split=split)

        def add(split, fn, work, flash4_tiles=0, flash4_query_tiles=0):
            row = dict(kind=kind, heads=f"{n_q_heads}/{n_kv_heads} x {head_dim}", head_dim=head_dim, L=length,
                       queries=n_queries, batch=batch, p=power, split=split,
                       vs_all_tiles=relative_error(fn(), all_tiles), ms=timed_ms(fn), **dataclasses.asdict(work),
                       flash4_tiles=flash4_tiles, flash4_query_tiles=flash4_query_tiles)
            rows.append(row)
            print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)

        all_tiles = run(length).double()
        for split in cost_model.candidate_splits(WINDOW, length):
            add(split, lambda: run(split), cost_model.work(split, tables.host_counts, n_queries, length,
                                                          (shape.block_m, shape.block_n), batch, n_q_heads, n_kv_heads))
        if kind == "whole" and flash4.runs(q, tables):
            lists = flash4.tile_lists(tables, length)
            add(FLASH4, lambda: flash4.prefill(q, k, v, out, lists, head_dim**-0.5), cost_model.Work(0, 0, 0, 0, 0),
                lists.visited * batch * n_q_heads, len(lists.masked_counts) * batch * n_q_heads)

    heads, kv_heads, head_dim = WHOLE["heads"]
    for length, batch in WHOLE["shapes"]:
        q, k, v = randn(batch, heads, length, head_dim), randn(batch, kv_heads, length, head_dim), randn(batch, kv_heads, length, head_dim)
        for power in WHOLE["powers"]:
            case("whole", q, k, v, length, power)
        del q, k, v
        torch.cuda.empty_cache()
    for (heads, kv_heads, head_dim), length in itertools.product(CHUNKS["heads"], CHUNKS["lengths"]):
        pages = -(-length // PAGE)
        k_cache, v_cache = randn(pages, PAGE, kv_heads, head_dim), randn(pages, PAGE, kv_heads, head_dim)
        block_table = torch.randperm(pages, device="cuda").to(torch.int32)[None]
        for n_queries, power in itertools.product(chunk_queries, CHUNKS["powers"]):
            if n_queries <= length:
                case("chunk", randn(1, heads, n_queries, head_dim), k_cache, v_cache, length, power, block_table)


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin |a x - b| over x >= 0, for a few columns: the best of the plain fits on every subset of
    columns whose solution is non-negative (the optimum is one of them)."""
    best, best_residual = np.zeros(a.shape[1]), float(np.sum(b**2))
    for size in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), size):
            x = np.linalg.lstsq(a[:, cols], b, rcond=None)[0]
            residual = float(np.sum((a[:, cols] @ x - b) ** 2))
            if (x >= 0).all() and residual < best_residual:
                best, best_residual = np.zeros(a.shape[1]), residual
                best[list(cols)] = x
    return best


def fit(rows: list[dict]) -> dict[str, float]:
    """The constants (ns at head 128), each group fitted on the rows where it dominates."""
    ns = np.array([r["ms"] * 1e6 * 128 / r["head_dim"] for r in rows])
    fitted = {}
    triton = [r["split"] != FLASH4 for r in rows]
    for features, chosen in ((THROUGHPUT, [t and r["kind"] == "whole" for t, r in zip(triton, rows)]),
                             (LATENCY, [t and r["queries"] == 16 for t, r in zip(triton, rows)]),
                             (("flash4_tiles", "flash4_query_tiles"), [not t for t in triton])):
        if not any(chosen):  # no FlashAttention-4 rows: the GPU's fit keeps its constants (picks())
            continue
        design = np.array([[float(r[f]) for f in features] for r, c in zip(rows, chosen) if c])
        coefficients = nonnegative_least_squares(design / ns[chosen][:, None], np.ones(len(design)))
        fitted.update({CONSTANTS[f]: float(c) for f, c in zip(features, coefficients)})
    return fitted


def picks(rows: list[dict], costs: cost_model.Costs) -> list[dict]:
    """Per case: the fastest split measured against the one the model with `costs` picks."""
    fields = {f.name for f in dataclasses.fields(cost_model.Work)}
    predicted = [cost_model.estimated_ns(cost_model.Work(**{f: r[f] for f in fields}), costs)
                 + cost_model.flash4_ns(r["flash4_tiles"], r["flash4_query_tiles"], costs) for r in rows]
    result = []
    for key in dict.fromkeys((r["kind"], r["heads"], r["L"], r["queries"], r["batch"], r["p"]) for r in rows):
        case = [i for i, r in enumerate(rows) if (r["kind"], r["heads"], r["L"], r["queries"], r["batch"], r["p"]) == key]
        best = min((rows[i] for i in case), key=lambda r: r["ms"])
        chosen = rows[min(case, key=lambda i: predicted[i])]
        result.append(dict(zip(("kind", "heads", "L", "queries", "batch", "p"), key), best_split=best["split"],
                           best_ms=best["ms"], model_split=chosen["split"], model_ms=chosen["ms"],
                           lost=chosen["ms"] / best["ms"] - 1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--label", default="", help="file name suffix, e.g. the GPU: prefill_costs_h100.json")
    parser.add_argument("--chunk-queries", default=",".join(map(str, CHUNKS["queries"])),
                        help="the chunk sizes to time (16 alone: the latency fit's chunks)")
    parser.add_argument("--refit", action="store_true", help="fit the rows of the json again (no GPU)")
    args = parser.parse_args()
    name = "prefill_costs" + (f"_{args.label}" if args.label else "")
    if args.refit:
        meta = json.loads((args.out / f"{name}.json").read_text())
        rows = meta.pop("rows")
    else:
        import torch

        from ppa_eval.kernels import prefill
        rows = []
        try:
            measure([int(n) for n in args.chunk_queries.split(",")], rows)
        except KeyboardInterrupt:
            print(f"interrupted: fitting the {len(rows)} rows measured", flush=True)
        meta = {"gpu": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
                "tile_shape": repr(prefill.TileShape()),
                "gather": f"{prefill.LONG_WALK!r}, {prefill.SHORT_WALK!r} for walks of <= {prefill.SHORT_WALK_DISTANCES} distances"}
    meta["fitted"] = fit(rows)
    costs = dataclasses.replace(cost_model.fit_for(meta["gpu"]), **meta["fitted"])
    meta["costs"] = "Costs(" + ", ".join(f"{k}={v:.4g}" for k, v in dataclasses.asdict(costs).items()) + ")"  # for FITS
    meta["picks"] = picks(rows, costs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    worst = max(meta["picks"], key=lambda r: r["lost"])
    lines = [f"# Prefill cost model ({meta['gpu']}, {meta['date']})", "",
             f"Tiles {meta['tile_shape']}, gather {meta['gather']}. Fitted (ns, head 128): "
             + ", ".join(f"{k} = {v:.4g}" for k, v in meta["fitted"].items()) + f"; the model's costs (cost_model.FITS): {meta['costs']}.", "",
             f"Worst pick: {worst['lost']:.1%} slower than the fastest split ({worst['kind']}, {worst['heads']}, "
             f"{worst['queries']} of {worst['L']}, p = {worst['p']}).", "",
             "| cases | heads | L | queries x batch | p | fastest split | ms | model's split | ms | time lost |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['heads']} | {r['L']} | {r['queries']} x {r['batch']} | {r['p']} | {r['best_split']} "
              f"| {r['best_ms']:.3f} | {r['model_split']} | {r['model_ms']:.3f} | {r['lost']:.1%} |" for r in meta["picks"]]
    n_picks = len(lines)
    lines += ["", "## every split", "", "| cases | heads | L | queries x batch | p | split | ms | diff to all tiles |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['heads']} | {r['L']} | {r['queries']} x {r['batch']} | {r['p']} | {r['split']} "
              f"| {r['ms']:.3f} | {r['vs_all_tiles']:.2e} |" for r in rows]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:n_picks]))


if __name__ == "__main__":
    main()
