"""Power retention on a GPU: the retention package's Triton kernels against our PyTorch reference
(correctness), and Brumby against a dense Qwen3 of the same shape (prefill and decode tokens/s).

    python bench/retention.py            # about 5 min on an H100, Triton's first compile included
    python bench/retention.py --quick    # about 2 min

Needs CUDA and `pip install 'ppa-eval[retention]'` (retention 1.0.7: pure Python, on top of the
torch and triton a CUDA torch already has). Writes results/bench/retention.{json,md}.

  - correctness: the tiny Brumby and PowerCoder of tests/fixtures/retention in float32, greedy
    tokens through the Triton kernels against the fixture's (the published modeling files on the
    package's reference), and the largest logit difference between Triton and our reference.
  - speed: random weights in bfloat16, `model.generate` as the transformers engine calls it,
    batch 1: prefill tokens/s (the prompt's forward), decode tokens/s (generated tokens over the
    time generate spends after the prefill). Models: the tiny one, and Brumby-14B's shape with
    --layers of its 40 layers (default 8: every layer costs the same, the embeddings are whole;
    --layers 40 is the whole model, about 30 GB per model), each beside Qwen3 of the same shape
    with stock SDPA attention.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from markdown_tables import section_tables  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "retention"
BRUMBY_14B = dict(hidden_size=5120, intermediate_size=17408, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                  vocab_size=151936, max_position_embeddings=40960, rope_theta=1_000_000.0, rms_norm_eps=1e-6)
TINY = dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
            vocab_size=256, max_position_embeddings=40960, num_hidden_layers=2)
COLUMNS = ("model", "attention", "length", "prefill_tok_s", "decode_tok_s", "peak_gib", "tokens_equal",
           "max_logit_diff", "note")


def synchronized(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def correctness(device) -> list[dict]:
    """Triton kernels against the fixture's greedy tokens and our reference's logits."""
    from ppa_eval.retention import register

    register()
    rows, section = [], "correctness (float32; tokens: against the published files')"
    for name, state in (("brumby", {}), ("powercoder", {"chunk_size": 16, "prefill_chunk_size": 16,
                                                         "switch_over_seq_len": 16})):
        expected = json.loads((FIXTURES / name / "expected.json").read_text())
        label = f"tiny {name}" + (" (state path)" if state else "")
        try:
            rows.append({"section": section, "model": label, "attention": "retention", "length": 40,
                         **compared(name, state, expected, device)})
        except Exception as error:  # a failed check is reported with the rest, not fatal
            rows.append({"section": section, "model": label, "note": f"failed: {type(error).__name__}: {error}"})
        print(rows[-1], flush=True)
    return rows


def compared(name, state, expected, device) -> dict:
    """Greedy tokens equal to the fixture's, and the largest logit difference to our reference."""
    from transformers import AutoModelForCausalLM

    from ppa_eval.retention import layer, reference

    model = AutoModelForCausalLM.from_pretrained(FIXTURES / name, dtype=torch.float32, **state).to(device).eval()
    ids = torch.tensor([expected["input_ids"]], device=device)
    with torch.no_grad():
        tokens = model.generate(ids[:, :20], max_new_tokens=24, min_new_tokens=24, do_sample=False,
                                pad_token_id=0)[0, 20:].tolist()
        triton_logits = model(ids, use_cache=False).logits
        kernels = layer.kernels
        layer.kernels = lambda device: reference  # the same model on our PyTorch reference
        try:
            reference_logits = model(ids, use_cache=False).logits
        finally:
            layer.kernels = kernels
    return {"tokens_equal": tokens == expected["greedy"],
            "max_logit_diff": float((triton_logits - reference_logits).abs().max())}


def timed(model, length: int, new_tokens: int, device) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) of one random prompt, batch 1."""
    ids = torch.randint(100, model.config.vocab_size, (1, length), device=device)
    settings = dict(do_sample=False, pad_token_id=0, min_new_tokens=new_tokens)
    with torch.no_grad():
        start = synchronized(device)
        model.generate(ids, max_new_tokens=1, **{**settings, "min_new_tokens": 1})
        prefill = synchronized(device) - start
        start = synchronized(device)
        model.generate(ids, max_new_tokens=new_tokens, **settings)
        whole = synchronized(device) - start
    return length / prefill, (new_tokens - 1) / max(whole - prefill, 1e-9)


def speed(device, shapes, lengths, new_tokens) -> list[dict]:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from ppa_eval.retention.models import BrumbyConfig, BrumbyForCausalLM

    rows = []
    for label, shape in shapes:
        for attention, config_class, model_class in (("retention", BrumbyConfig, BrumbyForCausalLM),
                                                      ("dense (sdpa)", Qwen3Config, Qwen3ForCausalLM)):
            config = config_class(**shape, attn_implementation="sdpa")
            torch.manual_seed(0)
            with torch.device(device):
                model = model_class(config).to(torch.bfloat16).eval()
            timed(model, min(lengths), 4, device)  # warm-up: Triton compiles and autotunes here
            for length in lengths:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                try:
                    prefill, decode = timed(model, length, new_tokens, device)
                    row = {"prefill_tok_s": round(prefill), "decode_tok_s": round(decode, 1)}
                except Exception as error:  # out of memory, a kernel that fails: reported, the rest goes on
                    row = {"note": f"failed: {type(error).__name__}: {str(error)[:200]}"}
                peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
                rows.append({"section": "speed (bfloat16, batch 1, generate)", "model": label, "attention": attention,
                             "length": length, **row, "peak_gib": None if peak is None else round(peak, 1),
                             "note": row.get("note", f"{new_tokens} new tokens")})
                print(rows[-1], flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 layers of the 14B shape, lengths 1k and 8k")
    parser.add_argument("--layers", type=int, default=8, help="layers of the Brumby-14B shape (40: the whole model)")
    parser.add_argument("--lengths", default=None, help="prompt lengths (default 1024,4096,16384,32768)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cuda", help="cuda; cpu is a dry run of the script on our reference")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "retention"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        import retention  # noqa: F401  (fails here, not after a model is built, when the extra is missing)
    layers = 2 if args.quick else args.layers
    lengths = [int(x) for x in (args.lengths or ("1024,8192" if args.quick else "1024,4096,16384,32768")).split(",")]
    shapes = [("tiny Brumby (2 layers)", TINY),
              (f"Brumby-14B shape, {layers} of 40 layers", {**BRUMBY_14B, "num_hidden_layers": layers})]
    rows = correctness(device) + speed(device, shapes, lengths, args.new_tokens)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    versions = {"torch": torch.__version__, "transformers": __import__("transformers").__version__}
    if device.type == "cuda":
        from importlib.metadata import version

        versions |= {"retention": version("retention"), "triton": version("triton")}
    header = {"gpu": gpu, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "versions": versions,
              "command": " ".join(sys.argv)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**header, "rows": rows}, indent=2) + "\n")
    lines = [f"# Power retention on {gpu} ({header['date']})", "",
             f"`{header['command']}`; {', '.join(f'{k} {v}' for k, v in versions.items())}.", "",
             *section_tables(rows, COLUMNS, [])]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
