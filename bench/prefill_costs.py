"""The prefill cost model's per-pair costs, measured: time PPA prefill at every split the model
can choose, fit the three constants of ppa_eval/kernels/cost_model.py, and check its choices.

For each (L, batch, p) of bench/attention.py's prefill grid and each candidate split (distances
below it as masked tiles, the rest gathered), the prefill is timed and its output compared with
the all-tiles output. A non-negative least-squares fit of

    time = TILE_NS x tile pairs x query heads + GATHER_NS x gathered pairs x KV heads + LAUNCH_NS

over all of them gives the constants (relative error, so short and long cases weigh alike). Then,
per case: the fastest split measured, the split the fitted model picks, and the time lost by
picking it. Writes prefill_costs.json and prefill_costs.md.

    PYTHONPATH=. python bench/prefill_costs.py [--out results/bench]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from attention import HEAD_DIM, KV_HEADS, PREFILL_SHAPES, Q_HEADS, WINDOW, randn, timed_ms  # the same grid and timer

from ppa_eval.kernels import cost_model, prefill
from ppa_eval.kernels.reference import relative_error
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.patterns import PowerPattern

POWERS = ["0", "1/2", "3/4", "7/8"]


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    shape = prefill.TileShape()
    rows = []
    for length, batch in PREFILL_SHAPES:
        q = randn(batch, Q_HEADS, length, HEAD_DIM)
        k, v = randn(batch, KV_HEADS, length, HEAD_DIM), randn(batch, KV_HEADS, length, HEAD_DIM)
        out = torch.empty_like(q)
        for power in POWERS:
            tables = offset_tables(PowerPattern(power, WINDOW), length, "cuda")
            all_tiles = prefill.prefill(q, k, v, torch.empty_like(q), tables, HEAD_DIM**-0.5, split=length).double()
            for split in cost_model.candidate_splits(WINDOW, length):
                run = lambda: prefill.prefill(q, k, v, out, tables, HEAD_DIM**-0.5, split=split)  # noqa: E731
                error = relative_error(run(), all_tiles)
                row = dict(L=length, batch=batch, p=power, split=split, ms=timed_ms(run), vs_all_tiles=error,
                           tile_pairs=batch * cost_model.tile_pairs(split, length, length, shape.block_m, shape.block_n),
                           gathered_pairs=batch * cost_model.gathered_pairs(tables.host_counts, split, length, length))
                rows.append(row)
                print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
        del q, k, v, out
        torch.cuda.empty_cache()

    # time (ns) = a * tile_pairs * Hq + b * gathered * Hkv + c * [gathered > 0], each row weighted by 1/time
    ns = np.array([r["ms"] * 1e6 for r in rows])
    design = np.array([[r["tile_pairs"] * Q_HEADS, r["gathered_pairs"] * KV_HEADS, float(r["gathered_pairs"] > 0)]
                       for r in rows])
    coefficients = nonnegative_least_squares(design / ns[:, None], np.ones(len(rows)))
    fitted = dict(zip(("TILE_NS_PER_PAIR_AND_HEAD", "GATHER_NS_PER_PAIR_AND_KV_HEAD", "GATHER_LAUNCH_NS"), coefficients))
    predicted = design @ coefficients  # the fitted model's time for every measured (case, split)

    picks = []
    for key in dict.fromkeys((r["L"], r["batch"], r["p"]) for r in rows):
        case = [i for i, r in enumerate(rows) if (r["L"], r["batch"], r["p"]) == key]
        best = min((rows[i] for i in case), key=lambda r: r["ms"])
        chosen = rows[min(case, key=lambda i: predicted[i])]
        picks.append(dict(L=key[0], batch=key[1], p=key[2], best_split=best["split"], best_ms=best["ms"],
                          model_split=chosen["split"], model_ms=chosen["ms"], lost=chosen["ms"] / best["ms"] - 1))

    meta = {"gpu": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "tile_shape": repr(shape), "gather": f"{prefill.LONG_WALK!r}, {prefill.SHORT_WALK!r} for walks of <= {prefill.SHORT_WALK_DISTANCES} distances", "fitted": fitted}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prefill_costs.json").write_text(json.dumps({**meta, "picks": picks, "rows": rows}, indent=1))
    lines = [f"# Prefill cost model ({meta['gpu']}, {meta['date']})", "",
             f"Tiles {meta['tile_shape']}, gather {meta['gather']}. Fitted: "
             + ", ".join(f"{k} = {v:.4g}" for k, v in fitted.items()), "",
             "| L | batch | p | fastest split | ms | model's split | ms | time lost |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['L']} | {r['batch']} | {r['p']} | {r['best_split']} | {r['best_ms']:.3f} | {r['model_split']} "
              f"| {r['model_ms']:.3f} | {r['lost']:.1%} |" for r in picks]
    lines += ["", "## every split", "", "| L | batch | p | split | ms | tile pairs | gathered pairs | diff to all tiles |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['L']} | {r['batch']} | {r['p']} | {r['split']} | {r['ms']:.3f} | {r['tile_pairs']:.3g} "
              f"| {r['gathered_pairs']:.3g} | {r['vs_all_tiles']:.2e} |" for r in rows]
    (args.out / "prefill_costs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8 + len(picks)]))


if __name__ == "__main__":
    main()
