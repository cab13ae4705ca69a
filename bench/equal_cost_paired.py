"""Paired tests for an equal-cost comparison (bench/equal_cost_sweep.sh): at each cost level, every
pattern against that level's PowerAttention run, problem by problem (exact McNemar, two-sided),
pooled over context lengths. A run belongs to the level of the PowerAttention run nearest to it in
cost at the reference length; full attention is left out (it is the ceiling, not a level).
Prints a table and writes RESULTS_DIR/paired_tests.{md,json}.

    python bench/equal_cost_paired.py results/pattern_families/runs
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from ppa_eval.patterns import dense_pairs, pairs, parse_spec
from ppa_eval.report import collect
from ppa_eval.runs import read_verdicts
from ppa_eval.stats import mcnemar_exact

REFERENCE_LENGTH = 4096  # where bench/equal_cost_sweep.sh matched the costs


def cost(spec: str) -> float:
    return pairs(parse_spec(spec), REFERENCE_LENGTH) / dense_pairs(REFERENCE_LENGTH)


def paired_tests(results: Path) -> pd.DataFrame:
    df = collect(results)
    df = df[df["series"] != "full"]
    rows = []
    for task, runs in df.groupby("task", sort=False):
        anchors = runs[runs["series"] == "powerattention"]
        for run in runs.itertuples():
            anchor = min(anchors.itertuples(), key=lambda a: abs(math.log(cost(a.attention) / cost(run.attention))))
            ours = read_verdicts(Path(run.task_dir) / "samples.jsonl")
            theirs = read_verdicts(Path(anchor.task_dir) / "samples.jsonl")
            b = sum(theirs[d] and not ours[d] for d in ours)  # PowerAttention right, this run wrong
            c = sum(ours[d] and not theirs[d] for d in ours)
            rows.append({"task": task, "level (% of dense at 4k)": f"{100 * cost(anchor.attention):.1f}",
                         "series": run.series, "attention": run.attention, "correct": f"{sum(ours.values())}/{len(ours)}",
                         "PowerAttention correct": f"{sum(theirs.values())}/{len(theirs)}",
                         "PA right, this wrong": b, "this right, PA wrong": c,
                         "McNemar p": "" if run.series == "powerattention" else f"{mcnemar_exact(b, c):.3g}"})
    return pd.DataFrame(rows).sort_values(["task", "level (% of dense at 4k)", "series"], kind="stable",
                                          key=lambda col: col.astype(float) if col.name.startswith("level") else col)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    table = paired_tests(args.results)
    markdown = ("# Each pattern against PowerAttention at the same cost, paired by problem\n\n"
                + table.to_markdown(index=False) + "\n")
    print(markdown)
    (args.results / "paired_tests.md").write_text(markdown)
    (args.results / "paired_tests.json").write_text(json.dumps(table.to_dict(orient="records"), indent=1) + "\n")
