"""Problems per minute on the long-context tasks, read from a finished sweep's samples.

Each sample records its share of its batch's generation time (`generation_s`), so a sweep that
ran once is the measurement: no second run. Prints one row per (device, task, context length, p)
and writes results/bench/long_context_speed_<label>.{json,md}.

    python bench/long_context_speed.py RESULTS_DIR --label h200 --device "NVIDIA H200, 2026-12-01"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ppa_eval.report import collect, long_context_rows, power_text
from ppa_eval.runs import read_samples

OUT = Path(__file__).resolve().parents[1] / "results" / "bench"


def speed_rows(results_dir: Path) -> pd.DataFrame:
    rows = []
    cells = long_context_rows(collect(results_dir))
    for (task_dir, task, power, window), group in cells.groupby(["task_dir", "task", "power", "window"]):
        samples = pd.DataFrame(read_samples(Path(task_dir) / "samples.jsonl"))
        for length, at_length in samples.groupby("context_length"):
            seconds = at_length["generation_s"].sum()
            rows.append({"task": task, "context_length": int(length), "power": power_text(power), "window": int(window),
                         "problems": len(at_length), "mean_prompt_tokens": round(at_length["prompt_tokens"].mean()),
                         "seconds": round(seconds, 2), "problems_per_minute": round(60 * len(at_length) / seconds, 1)})
    return pd.DataFrame(rows).sort_values(["task", "context_length", "power"], key=_order, ignore_index=True)


def _order(column: pd.Series) -> pd.Series:
    from ppa_eval.patterns import parse_power

    return column.map(lambda p: float(parse_power(p))) if column.name == "power" else column


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--label", required=True, help="file name part, e.g. h200 or cpu2")
    parser.add_argument("--device", required=True, help="what ran it, with the date")
    args = parser.parse_args()
    table = speed_rows(args.results_dir)
    markdown = f"# Long-context problems per minute: {args.device}\n\n" + table.to_markdown(index=False) + "\n"
    print(markdown)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"long_context_speed_{args.label}.md").write_text(markdown)
    (OUT / f"long_context_speed_{args.label}.json").write_text(
        json.dumps({"device": args.device, "rows": table.to_dict(orient="records")}, indent=1) + "\n")
