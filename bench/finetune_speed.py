"""Fine-tuning speed, read from a finished `ppa-eval finetune` directory.

Each fine-tune writes its steps (tokens, seconds) to training/<run>/log.jsonl and a summary when it
ends, so the fine-tune that made the checkpoints is the measurement: no second run. Prints one row
per pattern and writes results/bench/finetune_speed_<label>.{json,md}.

    python bench/finetune_speed.py FINETUNE_DIR --label h200 --device "NVIDIA H200, 2026-12-07"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ppa_eval.patterns import parse_spec, sort_key

OUT = Path(__file__).resolve().parents[1] / "results" / "bench"


def speed_rows(finetune_dir: Path) -> pd.DataFrame:
    rows = []
    for training_dir in sorted((finetune_dir / "training").iterdir()):
        config = json.loads((finetune_dir / training_dir.name / "config.json").read_text())
        summary = json.loads((training_dir / "summary.json").read_text())
        steps = [json.loads(line) for line in (training_dir / "log.jsonl").read_text().splitlines()]
        # the first steps include CUDA's and the kernels' warm-up: the rate after them is the steady one
        steady = steps[len(steps) // 10:]
        rows.append({"attention": config["ppa_attention"], "steps": summary["steps"], "tokens": summary["tokens"],
                     "seconds": summary["seconds"], "tokens_per_second": summary["tokens_per_second"],
                     "steady_tokens_per_second": round(sum(s["tokens"] for s in steady) /
                                                       sum(s["seconds"] for s in steady), 1),
                     # batches come in one order for every pattern, so these compare across patterns
                     "loss_first_quarter": _mean_loss(steps[: len(steps) // 4]),
                     "loss_last_quarter": _mean_loss(steps[-(len(steps) // 4):]),
                     "_order": sort_key(parse_spec(config["ppa_attention"]))})
    return pd.DataFrame(rows).sort_values("_order").drop(columns="_order")


def _mean_loss(steps: list[dict]) -> float:
    return round(sum(s["loss"] for s in steps) / len(steps), 3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("finetune_dir", type=Path)
    parser.add_argument("--label", required=True)
    parser.add_argument("--device", required=True, help="the GPU and the date")
    args = parser.parse_args()
    table = speed_rows(args.finetune_dir)
    settings = json.loads((args.finetune_dir / "finetune.json").read_text())
    markdown = (f"# Fine-tuning speed: {args.device}, {settings['attn_kernel']} mask, float32 weights (bf16 autocast on a GPU), "
                f"{settings['recipe']['batch_tokens']} padded tokens per step\n\n{table.to_markdown(index=False)}\n\n"
                f"All: {table['tokens'].sum():,} tokens in {table['seconds'].sum():,.0f} s of steps.\n")
    print(markdown)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"finetune_speed_{args.label}.md").write_text(markdown)
    (OUT / f"finetune_speed_{args.label}.json").write_text(json.dumps(
        {"device": args.device, "settings": settings, "rows": table.to_dict(orient="records")}, indent=1) + "\n")
