"""How often two results directories give the same verdict on the same problem, run by run.

Two paths through the same model and pattern (the Triton kernels or flex attention against the
exact SDPA mask, GPU bfloat16 against CPU float32) should differ only where rounding tips a greedy choice. Runs
are matched by run name and task, problems by doc_id; only problems both sides scored count.
Long-context runs are compared per context length too (a cell).
Prints a table and writes results/bench/verdict_agreement_<label>.{json,md}.

    python bench/verdict_agreement.py A_DIR B_DIR --label triton-vs-sdpa --what "H200 Triton kernel vs H200 SDPA mask"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ppa_eval.report import collect
from ppa_eval.runs import read_samples

OUT = Path(__file__).resolve().parents[1] / "results" / "bench"


def agreement(a_dir: Path, b_dir: Path) -> pd.DataFrame:
    """One row per (run, task) and, for the long-context tasks, per context length: a cell."""
    a, b = collect(a_dir), collect(b_dir)
    b_dirs = {(row.run, row.task): Path(row.task_dir) for row in b.itertuples()}
    rows = []
    for row in a.itertuples():
        if (row.run, row.task) not in b_dirs:
            continue
        ours = _verdicts_by_length(Path(row.task_dir) / "samples.jsonl")
        theirs = _verdicts_by_length(b_dirs[row.run, row.task] / "samples.jsonl")
        for length in sorted(ours.keys() & theirs.keys(), key=str):
            shared = sorted(ours[length].keys() & theirs[length].keys())
            rows.append({"task": row.task, "attention": row.attention, "length": length or "-",
                         "problems": len(shared),
                         "same_verdict": sum(ours[length][d] == theirs[length][d] for d in shared),
                         "a_correct": sum(ours[length][d] for d in shared),
                         "b_correct": sum(theirs[length][d] for d in shared)})
    return pd.DataFrame(rows)


def _verdicts_by_length(samples_path: Path) -> dict:
    """{context_length (None outside long context): {doc_id: correct}}."""
    cells: dict = {}
    for sample in read_samples(samples_path):
        cells.setdefault(sample.get("context_length"), {})[sample["doc_id"]] = sample["correct"]
    return cells


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--label", required=True)
    parser.add_argument("--what", required=True, help="what A and B are, with devices and the date")
    args = parser.parse_args()
    table = agreement(args.a, args.b)
    total, same = int(table["problems"].sum()), int(table["same_verdict"].sum())
    lowest = (table["same_verdict"] / table["problems"]).min()
    markdown = (f"# Verdict agreement: {args.what}\n\n{table.to_markdown(index=False)}\n\n"
                f"All: {same} of {total} verdicts equal ({100 * same / total:.1f}%; lowest cell "
                f"{100 * lowest:.1f}%); correct: "
                f"A {int(table['a_correct'].sum())}, B {int(table['b_correct'].sum())}.\n")
    print(markdown)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"verdict_agreement_{args.label}.md").write_text(markdown)
    (OUT / f"verdict_agreement_{args.label}.json").write_text(json.dumps(
        {"what": args.what, "equal": same, "total": total, "rows": table.to_dict(orient="records")}, indent=1) + "\n")
