"""Greedy generation on a static KV cache, each decode step replayed from one CUDA graph.

transformers' generate() is host-bound on a GPU at long context: a decode step costs the host more
time than the GPU's work takes, so a faster attention kernel saves nothing there (the measurement:
results/bench/host_costs.md). Here the cache is
static (its tensors never move), the attention reads each row's length on the device
(hf_attention's ppa_kernel), and one decode step - every layer, the cache update, the argmax, the
next position - is captured once and replayed. The host's work per step is one replay and one copy,
whatever the number of layers or the length; it looks at the tokens every `check_every` steps.

The tokens are generate()'s greedy ones: the same positions for left-padded rows (counted from a
row's first real token), the same argmax over the last position's logits. Rows run on after their
end of sequence; the caller cuts them (HFEngine._finish), as it cuts generate()'s padding.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch


def runs_model(model) -> bool:
    """Can this model's decode steps be replayed from a graph? It needs a static cache and greedy
    decoding without logits processors (a repetition penalty, say, reads every token so far)."""
    if not getattr(model, "_can_compile_fullgraph", False):  # transformers' mark of static-cache support
        return False
    greedy = copy.deepcopy(model.generation_config)
    greedy.do_sample = False  # as HFEngine asks of generate()
    if (greedy.num_beams or 1) > 1:
        return False
    return len(model._get_logits_processor(generation_config=greedy, input_ids_seq_length=1, device=model.device)) == 0


@torch.inference_mode()
def greedy_generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                    done: Callable[[list[list[int]]], bool], check_every: int = 32) -> list[list[int]]:
    """Up to max_new_tokens greedy tokens per left-padded row; stops early once done(rows so far)."""
    from transformers import StaticCache

    batch, prompt = input_ids.shape
    device = input_ids.device
    cache = StaticCache(config=model.config, max_cache_len=prompt + max_new_tokens)
    # One padding mask for every step: each row's slots from its first real token on are real; the
    # slots past the current step are excluded by the causal mask and the cache's filled length.
    slots = torch.ones(batch, prompt + max_new_tokens, dtype=attention_mask.dtype, device=device)
    slots[:, :prompt] = attention_mask
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill_(attention_mask == 0, 0)
    logits = model(input_ids=input_ids, attention_mask=slots, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits
    token = logits[:, -1].argmax(-1, keepdim=True)   # [B, 1], the input of the next step
    position = positions[:, -1:] + 1
    tokens = torch.empty(batch, max_new_tokens, dtype=token.dtype, device=device)
    tokens[:, :1] = token

    def step():
        logits = model(input_ids=token, attention_mask=slots, position_ids=position, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits
        token.copy_(logits[:, -1].argmax(-1, keepdim=True))
        position.add_(1)

    graph = None
    for n in range(1, max_new_tokens):
        if n % check_every == 0 and done(tokens[:, :n].tolist()):
            return tokens[:, :n].tolist()
        if device.type != "cuda":
            step()
        elif graph is None:
            graph = run_then_capture(step)
        else:
            graph.replay()
        tokens[:, n:n + 1] = token
    return tokens.tolist()


def run_then_capture(step: Callable[[], None]) -> torch.cuda.CUDAGraph:
    """Run `step` once for real, on a side stream as capture wants (lazy allocations and Triton
    compiles happen there), then capture it: the graph's replays run the later steps. What the
    step reads from outside the graph must outlive it: the cache and buffers are greedy_generate's,
    the kernels' offset tables stay in their cache (one pattern and length per generation)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()  # recorded, not run: the cache and the position advance only on replay
    return graph
