"""Brumby and PowerCoder (ppa_eval.retention) against what the published modeling files compute
(tests/fixtures/retention, made by its make_fixtures.py on transformers 4.57 with the retention
package's reference), and the properties those files lack or do not test: a tied output layer,
padding that changes nothing, and the state path equal to the exact quadratic path."""

import json
from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ppa_eval.retention import reference, register
from ppa_eval.retention.models import BrumbyConfig

FIXTURES = Path(__file__).parent / "fixtures" / "retention"
MODELS = ("brumby", "powercoder")


def load(name: str, **config):
    from transformers import AutoModelForCausalLM

    register()
    return AutoModelForCausalLM.from_pretrained(FIXTURES / name, dtype=torch.float32, **config).eval()


def expected(name: str) -> tuple[dict, dict]:
    return json.loads((FIXTURES / name / "expected.json").read_text()), load_file(FIXTURES / name / "expected_logits.safetensors")


def greedy(model, ids, new_tokens, attention_mask=None) -> list[list[int]]:
    out = model.generate(ids, attention_mask=attention_mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         do_sample=False, pad_token_id=0)
    return out[:, ids.shape[1]:].tolist()


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_logits_equal_the_published_modeling_files(name):
    model = load(name)
    record, logits = expected(name)
    ids = torch.tensor([record["input_ids"]])
    for key, length in (("short", 24), ("long", 40)):  # the attention form; Brumby's chunked prefill
        torch.testing.assert_close(model(ids[:, :length], use_cache=False).logits[0], logits[key],
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_greedy_tokens_equal_the_published_modeling_files(name):
    record, _ = expected(name)
    assert greedy(load(name), torch.tensor([record["input_ids"][:20]]), 24) == [record["greedy"]]


@pytest.mark.slow
@torch.no_grad()
def test_the_state_path_gives_the_tokens_of_the_exact_quadratic_path():
    """PowerCoder's config names no chunks (the exact path); chunk 16 folds the 20-token prompt at
    the first decode step and every 16 tokens after, as the published state path did."""
    record, _ = expected("powercoder")
    ids = torch.tensor([record["input_ids"][:20]])
    exact = greedy(load("powercoder"), ids, 24)
    state = load("powercoder", chunk_size=16, prefill_chunk_size=16, switch_over_seq_len=16)
    assert state.config.chunk_size == 16
    assert exact == greedy(state, ids, 24) == [record["greedy_state_path"]] == [record["greedy"]]


def test_powercoder_ties_its_output_layer_to_the_embeddings():
    record, _ = expected("powercoder")
    model = load("powercoder")
    stored = load_file(FIXTURES / "powercoder" / "model.safetensors")
    assert "lm_head.weight" not in stored  # the published code saved it tied
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    torch.testing.assert_close(model.lm_head.weight, stored["model.embed_tokens.weight"].float())
    assert sum(p.numel() for p in model.parameters()) == record["parameters"]
    brumby = load("brumby")  # Brumby's config unties them, as Qwen3-14B's does
    assert brumby.lm_head.weight.data_ptr() != brumby.model.embed_tokens.weight.data_ptr()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
@torch.no_grad()
def test_a_left_padded_row_computes_what_it_computes_alone(name):
    """Gates held near 1 (sigmoid(10)), so that nothing decays: padding that leaked into the
    retention would move the row (the published files' rows move by up to 150%)."""
    model = load(name)
    for layer in model.model.layers:
        gate = layer.self_attn.g_proj
        gate.weight.zero_()
        if gate.bias is None:
            gate.bias = torch.nn.Parameter(torch.zeros(gate.out_features))
        gate.bias.fill_(10.0)
    record, _ = expected(name)
    short, long = record["input_ids"][:12], record["input_ids"][:30]
    ids = torch.tensor([[0] * 18 + short, long])
    mask = torch.tensor([[0] * 18 + [1] * 12, [1] * 30])
    together = greedy(model, ids, 8, attention_mask=mask)
    assert together == greedy(model, torch.tensor([short]), 8) + greedy(model, torch.tensor([long]), 8)
    padded = model(ids, attention_mask=mask, use_cache=False).logits[0, -1]
    torch.testing.assert_close(padded, model(torch.tensor([short]), use_cache=False).logits[0, -1],
                               atol=1e-4, rtol=1e-4)
    unmasked = model(ids[:1], use_cache=False).logits[0, -1]  # the same pads, not masked: they count
    assert (unmasked - padded).abs().max() > 1e-2


def shapes(t=50, heads=4, kv_heads=2, size=32):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, t, h, size, generator=generator) for h in (heads, kv_heads, kv_heads))
    log_g = torch.nn.functional.logsigmoid(torch.randn(2, t, kv_heads, generator=generator) + 3)
    return q, k, v, log_g


def brute_force(q, k, v, log_g):
    """Y_i = sum_j w_ij v_j / sum_j w_ij, w_ij = (q_i.k_j / sqrt(d))^2 prod_{j<l<=i} g_l, one pair at a time, float64."""
    q, k, v, log_g = (x.double() for x in (q, k, v, log_g))
    b, t, hq, d = q.shape
    r = hq // k.shape[2]
    out = torch.zeros_like(q)
    for i in range(t):
        for h in range(hq):
            kv = h // r
            w = torch.stack([(q[:, i, h] * k[:, j, kv]).sum(-1) ** 2 / d * torch.exp(log_g[:, j + 1: i + 1, kv].sum(1))
                             for j in range(i + 1)], dim=1)  # [b, i + 1]
            out[:, i, h] = torch.einsum("bj,bjd->bd", w, v[:, : i + 1, kv]) / w.sum(1, keepdim=True)
    return out.float()


@cache
def formula() -> torch.Tensor:
    """brute_force of shapes(), computed once for the tests below."""
    return brute_force(*shapes())


@pytest.mark.parametrize("chunking", [{}, {"chunk_size": 16}, {"chunk_size": 16, "switch_over_seq_len": 32}])
def test_reference_prefill_equals_the_formula(chunking):
    q, k, v, log_g = shapes()
    torch.testing.assert_close(reference.power_retention(q, k, v, log_g, **chunking), formula(), atol=1e-5, rtol=1e-4)


def test_reference_decode_folding_every_8_tokens_equals_the_formula():
    q, k, v, log_g = shapes()
    state, start, outputs = (None, None), 0, []
    for i in range(q.shape[1]):
        tail = slice(start, i + 1)
        y, *folded = reference.power_retention_inference(q[:, i:i + 1], k[:, tail], v[:, tail], log_g[:, tail],
                                                         *state, switch_over_seq_len=8)
        if i + 1 - start >= 8:
            state, start = folded, i + 1
        outputs.append(y)
    torch.testing.assert_close(torch.cat(outputs, 1), formula(), atol=1e-5, rtol=1e-4)


def test_reference_equals_the_retention_package_where_installed():
    package = pytest.importorskip("retention.reference", reason="the retention extra (and triton) is not installed")
    q, k, v, log_g = shapes()
    for chunking in ({}, {"chunk_size": 16}):
        torch.testing.assert_close(reference.power_retention(q, k, v, log_g, **chunking),
                                   package.power_retention(q, k, v, log_g, **chunking), atol=1e-5, rtol=1e-4)


def test_only_degree_2_is_accepted():
    q, k, v, log_g = shapes(t=4)
    with pytest.raises(ValueError, match="degree 4"):
        reference.power_retention(q, k, v, log_g, deg=4)


def test_a_brumby_config_keeps_the_published_defaults():
    config = BrumbyConfig()
    assert (config.chunk_size, config.prefill_chunk_size, config.switch_over_seq_len) == (64, 1024, 8192)
