"""The "ppa_kernel" transformers attention against the exact "ppa_sdpa" one, in real models.

Tiny random models (a Llama, and a NemotronH with Mamba-2, attention and MLP layers) with a
non-power-of-two GQA group run a left-padded batch through prefill and cached decode steps with
each implementation; the logits of every real position must agree. On a machine without a GPU the
kernels run in Triton's interpreter (float16 model, float32 reference).
"""


import pytest
import torch
import transformers

from ppa_eval.engines import hf_attention
from ppa_eval.kernels.reference import relative_error
from ppa_eval.patterns import PowerPattern

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float16


def llama_config():
    return transformers.LlamaConfig(
        vocab_size=128, hidden_size=160, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=10, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
    )


def nemotron_h_config():
    return transformers.NemotronHConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128,
        layers_block_type=["mamba", "attention", "mlp", "mamba", "attention", "mlp"],
        num_attention_heads=10, num_key_value_heads=2, head_dim=16,
        ssm_state_size=16, mamba_num_heads=8, mamba_head_dim=16, n_groups=2, chunk_size=32,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )


def tiny_model(attn_implementation, dtype, config=None, pattern=PowerPattern("3/4", 4)):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config or llama_config(), dtype=torch.float32).eval()
    hf_attention.set_pattern(model.config, pattern)
    model.config._attn_implementation = attn_implementation
    return model.to(DEVICE, dtype)


@torch.inference_mode()
def logits_of_prefill_and_decode(model, ids, mask, steps):
    """Logits of the prompt, then of `steps` cached single-token steps (feeding fixed tokens)."""
    out = model(input_ids=ids, attention_mask=mask, use_cache=True)
    logits, cache = [out.logits.float()], out.past_key_values
    for step in range(steps):
        token = torch.full((ids.shape[0], 1), 3 + step, device=DEVICE)
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)
        out = model(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True)
        logits.append(out.logits.float())
    return torch.cat(logits, dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("config, pattern, padding", [
    (llama_config, PowerPattern("3/4", 4), 11),
    (nemotron_h_config, PowerPattern("3/4", 4), 11),
    (llama_config, PowerPattern("1/2", 4, 3), 11),  # sinks: counted from each row's first real token
    (llama_config, PowerPattern(1, 0), 0),  # unpadded full attention: the prompt takes dense SDPA
])
def test_kernel_attention_matches_exact_sdpa_in_a_left_padded_batch(config, pattern, padding):
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128, (2, 37), generator=gen).to(DEVICE)
    mask = torch.ones_like(ids)
    mask[1, :padding] = 0  # row 1 is left-padded
    kernel = logits_of_prefill_and_decode(tiny_model("ppa_kernel", DTYPE, config(), pattern), ids, mask, steps=2)
    exact = logits_of_prefill_and_decode(tiny_model("ppa_sdpa", torch.float32, config(), pattern), ids, mask, steps=2)
    real = torch.cat([mask, torch.ones(2, 2, dtype=mask.dtype, device=DEVICE)], dim=1).bool()
    assert relative_error(kernel[real], exact[real].double()) <= 1e-2


def test_kernel_attention_refuses_right_padding():
    ids = torch.randint(0, 128, (2, 12)).to(DEVICE)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    with pytest.raises(hf_attention.KernelMaskError, match="left padding"):
        tiny_model("ppa_kernel", DTYPE)(input_ids=ids, attention_mask=mask)


def until_eos(row, eos):
    return row[: row.index(eos) + 1] if eos in row else row


@pytest.mark.slow
@pytest.mark.parametrize("config, pattern", [
    (llama_config, PowerPattern("3/4", 4)),
    (llama_config, PowerPattern("1/2", 4, 3)),
    (nemotron_h_config, PowerPattern("3/4", 4)),
])
def test_static_cache_decode_gives_generates_tokens(config, pattern):
    """hf_graph's greedy decoding (static cache, row lengths read on the device; on a GPU each step
    replayed from a CUDA graph) against transformers' generate() with a dynamic cache, both on the
    kernels, in a left-padded batch: the same tokens up to each row's end of sequence."""
    from ppa_eval.engines import hf_graph

    model = tiny_model("ppa_kernel", DTYPE, config(), pattern)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 128, (2, 37), generator=gen).to(DEVICE)
    mask = torch.ones_like(ids)
    mask[0, :9] = 0
    with torch.inference_mode():
        stock = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    graphed = hf_graph.greedy_generate(model, ids, mask, 10, done=lambda rows: False, check_every=4)
    eos = model.generation_config.eos_token_id
    assert hf_graph.runs_model(model)
    assert [until_eos(row, eos) for row in graphed] == [until_eos(row, eos) for row in stock[:, 37:].tolist()]
