"""The pass key as multiple choice (lm-eval task ppa_passkey_choice) through lm-eval with ppa-eval's
`ppa` model: the embedded model, training-free, under each p at w = 64, with the true key scored
against three other 5-digit numbers (chance 25%). Writes choice.json and choice.md (accuracy per p
and context length, Wilson 95% intervals) into OUT.

    python3 bench/choice_sweep.py OUT [--per-length 8] [--device cuda] [--powers 0,1/2,1] [--context-lengths 1024]
"""

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import lm_eval
import torch
from lm_eval.tasks import TaskManager

from ppa_eval.engines.embedded import embedded_checkpoint
from ppa_eval.lm_eval_model import PPALM
from ppa_eval.long_context import DEFAULT_CONTEXT_LENGTHS
from ppa_eval.stats import accuracy_ci
from ppa_eval.tasks import TASKS_DIR

POWERS = ("0", "1/8", "1/4", "3/8", "1/2", "5/8", "3/4", "7/8", "15/16", "1")
WINDOW = 64


def accuracy_by_length(samples: list[dict]) -> dict[str, dict]:
    cells = {}
    for length in sorted({s["doc"]["context_length"] for s in samples}):
        hits = [s["acc"] for s in samples if s["doc"]["context_length"] == length]
        cells[str(length)] = {"accuracy": sum(hits) / len(hits), "ci95": list(accuracy_ci(round(sum(hits)), len(hits))),
                              "n": len(hits)}
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-length", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--powers", default=",".join(POWERS))
    parser.add_argument("--context-lengths", default=",".join(map(str, DEFAULT_CONTEXT_LENGTHS)))
    args = parser.parse_args()
    checkpoint = str(embedded_checkpoint())
    metadata = {"pretrained": checkpoint, "context_lengths": [int(n) for n in args.context_lengths.split(",")],
                "per_length": args.per_length}
    rows = []
    for power in args.powers.split(","):
        model = PPALM(pretrained=checkpoint, attention=f"ppa:p={power},w={WINDOW}", device=args.device,
                      batch_size=args.batch_size)
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
        result = lm_eval.simple_evaluate(model=model, tasks=["ppa_passkey_choice"], task_manager=manager,
                                         log_samples=True)
        samples = result["samples"]["ppa_passkey_choice"]
        rows.append({"power": power, "window": WINDOW, "accuracy": result["results"]["ppa_passkey_choice"]["acc,none"],
                     "n": len(samples), "by_length": accuracy_by_length(samples)})
        print(f"p={power}: {rows[-1]['accuracy']:.3f} of {len(samples)}", file=sys.stderr)
        del model
        torch.cuda.empty_cache()
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choice.json").write_text(json.dumps({"date": str(date.today()), "device": device,
                                                      "checkpoint": "embedded SmolLM2-135M-Instruct",
                                                      "task": "ppa_passkey_choice", "rows": rows}, indent=2) + "\n")
    lengths = list(rows[0]["by_length"])
    lines = [f"ppa_passkey_choice (lm-eval, model `ppa`), embedded SmolLM2-135M-Instruct, w = {WINDOW}, "
             f"{device}, {date.today()}: accuracy % [Wilson 95% CI] (n); chance is 25%.", "",
             "| p | " + " | ".join(f"{length} tokens" for length in lengths) + " | all |",
             "|---|" + "---|" * (len(lengths) + 1)]
    for row in rows:
        cells = [f"{100 * c['accuracy']:.0f} [{100 * c['ci95'][0]:.0f}, {100 * c['ci95'][1]:.0f}] ({c['n']})"
                 for c in row["by_length"].values()]
        lines.append(f"| {row['power']} | " + " | ".join(cells) + f" | {100 * row['accuracy']:.1f} |")
    (args.out / "choice.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
