"""vLLM with the PPA plug-in on a model of NVIDIA-Nemotron-Nano-9B-v2's shape with random weights
(one GPU, two for tensor parallel): exactness against the transformers engine. Throughput against
stock vLLM is bench/vllm_throughput.py.

    python bench/vllm_nemotron.py make-model DIR             random weights of the real config, saved once
    python bench/vllm_nemotron.py agreement DIR [--tensor-parallel-size 2] [--out D]
                                                             next-token top-1, vLLM vs transformers, p = 3/4

agreement: 16 random prompts of 448 tokens get a 32-token greedy continuation from vLLM (bf16) at
p = 3/4; then vLLM (prompt logprobs) and the transformers engine (exact boolean-mask SDPA) score the
same 480 tokens teacher-forced, both in float32, and we count positions whose top-1 token agrees.
Random weights make near-ties, hence top-1 over a teacher-forced sequence rather than free-running
text, and float32: bf16 rounding alone flips about 1 top-1 in 20 on this random 56-layer model
(vLLM bf16 against vLLM float32, reported too). vLLM at p = 1 scores the same sequences, to show
that the pattern changes the logits. Each engine runs in a process of its own; the result goes to
--out (results/bench/vllm_agreement.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ppa_eval.patterns import PowerPattern
from vllm_throughput import NANO_9B_V2, WINDOW, random_prompts
from vllm_throughput import engine as vllm_engine

POWER = "3/4"
AGREEMENT = dict(prompts=16, prompt_tokens=448, new_tokens=32, target=0.99)


def make_model(directory: Path) -> None:
    from transformers import AutoModelForCausalLM, NemotronHConfig

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(NemotronHConfig(**NANO_9B_V2), dtype=torch.bfloat16)
    model.save_pretrained(directory)
    save_placeholder_tokenizer(directory)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters saved to {directory}")


def save_placeholder_tokenizer(directory: Path) -> None:
    """Token i is the word "t{i}": random weights need no real vocabulary, but loaders want a tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(NANO_9B_V2["vocab_size"])}, unk_token="t0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=words, bos_token="t1", eos_token="t2", pad_token="t12").save_pretrained(directory)


# -- one engine per process ----------------------------------------------------------------------

def vllm_top1(directory: Path, engine: str, dtype: str, tensor_parallel_size: int, sequences_path: Path,
              out: Path) -> None:
    """(vLLM process) Continue the prompts greedily if no sequences exist yet, then score them."""
    from vllm import SamplingParams

    llm = vllm_engine(directory, "ppa", "1" if engine == "ppa-full" else POWER, eager=True, dtype=dtype,
                      tensor_parallel_size=tensor_parallel_size, max_model_len=1024, enable_prefix_caching=False)
    if not sequences_path.exists():
        prompts = random_prompts(AGREEMENT["prompts"], AGREEMENT["prompt_tokens"], NANO_9B_V2["vocab_size"], seed=1)
        outputs = llm.generate([{"prompt_token_ids": p} for p in prompts],
                               SamplingParams(temperature=0, max_tokens=AGREEMENT["new_tokens"], ignore_eos=True,
                                              detokenize=False))
        sequences_path.write_text(json.dumps([p + list(o.outputs[0].token_ids) for p, o in zip(prompts, outputs)]))
    sequences = json.loads(sequences_path.read_text())
    outputs = llm.generate([{"prompt_token_ids": s} for s in sequences],
                           SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=1, detokenize=False))
    # prompt_logprobs[i] is the distribution of token i given tokens < i (None for i = 0)
    top1 = [[next(t for t, lp in position.items() if lp.rank == 1) for position in o.prompt_logprobs[1:]]
            for o in outputs]
    out.write_text(json.dumps(top1))


def transformers_top1(directory: Path, sequences_path: Path, out: Path) -> None:
    """(transformers process) Teacher-forced top-1 of the transformers engine at p = 3/4, float32."""
    from ppa_eval.engines.hf import load_model

    model, _ = load_model(directory, PowerPattern(POWER, WINDOW), device="cuda", dtype="float32", attn_kernel="sdpa")
    sequences = torch.tensor(json.loads(sequences_path.read_text()), device="cuda")
    top1 = []
    with torch.inference_mode():
        for row in sequences:  # one at a time: the pure-torch Mamba-2 scan is memory-hungry
            logits = model(input_ids=row[None]).logits[0, :-1]
            top1.append(logits.argmax(-1).tolist())
    out.write_text(json.dumps(top1))


# -- driver ---------------------------------------------------------------------------------------

def in_subprocess(*args: str) -> None:
    subprocess.run([sys.executable, __file__, *args], check=True)


def agreement(directory: Path, out_dir: Path, work: Path, tensor_parallel_size: int) -> None:
    """Each step writes its file into `work` and is skipped when the file exists (engines start slowly).
    With tensor_parallel_size > 1, vLLM also scores the sequences split over that many GPUs."""
    work.mkdir(parents=True, exist_ok=True)
    sequences = work / "sequences.json"
    steps = [  # the first one also writes the sequences
        ("vllm_ppa_bfloat16.json", "_vllm_top1", "ppa", "bfloat16", "1"),
        ("vllm_ppa_float32.json", "_vllm_top1", "ppa", "float32", "1"),
        ("vllm_full_float32.json", "_vllm_top1", "ppa-full", "float32", "1"),
        ("transformers_ppa_float32.json", "_transformers_top1"),
    ]
    tp_name = f"vllm_ppa_float32_tp{tensor_parallel_size}"
    if tensor_parallel_size > 1:
        steps.append((f"{tp_name}.json", "_vllm_top1", "ppa", "float32", str(tensor_parallel_size)))
    for name, worker, *engine_dtype in steps:
        if not (work / name).exists():
            in_subprocess(worker, str(directory), *engine_dtype, str(sequences), str(work / name))
    top1 = {name.removesuffix(".json"): torch.tensor(json.loads((work / name).read_text())) for name, *_ in steps}
    agree = lambda a, b, at=slice(None): round((top1[a][:, at] == top1[b][:, at]).float().mean().item(), 4)  # noqa: E731
    continuation = slice(AGREEMENT["prompt_tokens"] - 1, None)  # positions predicting continuation tokens
    result = {
        "model": "Nemotron-Nano-9B-v2 shape, random bf16 weights", "power": POWER, "window": WINDOW, **AGREEMENT,
        "positions": top1["vllm_ppa_float32"].numel(),
        "top1_agree_vllm_vs_transformers_float32": agree("vllm_ppa_float32", "transformers_ppa_float32"),
        "top1_agree_vllm_vs_transformers_float32_continuation": agree(
            "vllm_ppa_float32", "transformers_ppa_float32", continuation),
        "top1_agree_vllm_ppa_vs_vllm_full_float32": agree("vllm_ppa_float32", "vllm_full_float32"),
        "top1_agree_vllm_bfloat16_vs_transformers_float32": agree("vllm_ppa_bfloat16", "transformers_ppa_float32"),
        "top1_agree_vllm_bfloat16_vs_vllm_float32": agree("vllm_ppa_bfloat16", "vllm_ppa_float32"),
    }
    exact = [result["top1_agree_vllm_vs_transformers_float32"]]  # what must reach the target
    if tensor_parallel_size > 1:
        result[f"top1_agree_{tp_name}_vs_transformers_float32"] = agree(tp_name, "transformers_ppa_float32")
        exact.append(result[f"top1_agree_{tp_name}_vs_transformers_float32"])
    result["passed"] = min(exact) >= AGREEMENT["target"] and result["top1_agree_vllm_ppa_vs_vllm_full_float32"] < 1.0
    (out_dir / "vllm_agreement.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if not result["passed"]:
        sys.exit(1)


def main() -> None:
    if sys.argv[1].startswith("_"):  # a worker process started by this script
        command, directory, *rest = sys.argv[1:]
        if command == "_vllm_top1":
            vllm_top1(Path(directory), rest[0], rest[1], int(rest[2]), Path(rest[3]), Path(rest[4]))
        elif command == "_transformers_top1":
            transformers_top1(Path(directory), Path(rest[0]), Path(rest[1]))
        sys.stdout.flush()
        os._exit(0)  # the result is written; vLLM 0.24's engine teardown can abort the process
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["make-model", "agreement"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--tensor-parallel-size", type=int, default=1,
                        help="agreement: also score with vLLM split over this many GPUs")
    parser.add_argument("--work", type=Path, help="agreement: where the steps keep their files (default OUT/vllm_agreement_work)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "make-model":
        make_model(args.directory)
    else:
        agreement(args.directory, args.out, args.work or args.out / "vllm_agreement_work", args.tensor_parallel_size)


if __name__ == "__main__":
    main()
