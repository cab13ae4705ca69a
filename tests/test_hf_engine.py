"""The transformers engine under PPA against the stock model and a brute-force mask."""

from fractions import Fraction

import pytest
import torch
from transformers import AutoModelForCausalLM

from ppa_eval.engines import EngineError, hf_attention
from ppa_eval.engines.hf import HFEngine, attention_kernel, load_model
from ppa_eval.patterns import PowerPattern, parse_spec
from reference import cached_and_full_logits, dense_mask, left_padded_batch

TOL = 1e-4  # float32, for one attention layer's output


def logits_tolerance(model, logits) -> float:
    """How far two float32 forward passes of `model` may differ when they only sum in another order
    (cached decode multiplies one row at a time, a full forward whole matrices: other blockings).

    Each layer's dot products of length `hidden` round to about sqrt(hidden) * eps relative to the
    activations' scale, and the residual stream carries every layer's error to the logits, so the
    bound is layers * sqrt(hidden) * eps * max|logit| (SmolLM2: 30 * 24 * 1.2e-7 * 18 = 1.5e-3;
    measured differences are 1e-4 on one CPU and 1.4e-4 on another). A masking error changes
    logits by units, far above it.
    """
    eps = torch.finfo(torch.float32).eps
    return model.config.num_hidden_layers * model.config.hidden_size ** 0.5 * eps * logits.abs().max().item()


def stock(checkpoint):
    return AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="sdpa").eval()


def max_diff_on_real_tokens(a, b, mask):
    return max((a[r][mask[r].bool()] - b[r][mask[r].bool()]).abs().max().item() for r in range(len(mask)))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["embedded", "nemotron"])
def test_full_power_is_the_stock_model(model, embedded_checkpoint, tiny_nemotron):
    checkpoint = embedded_checkpoint if model == "embedded" else tiny_nemotron
    ppa, _ = load_model(checkpoint, PowerPattern(1, 0))
    ids, mask = left_padded_batch(ppa.config.vocab_size, [150, 97])
    with torch.no_grad():
        ours = ppa(ids, attention_mask=mask).logits
        theirs = stock(checkpoint)(ids, attention_mask=mask).logits
    assert max_diff_on_real_tokens(ours, theirs, mask) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("power, window", [("0", 16), ("1/2", 8), ("3/4", 0), ("1/3", 4)])
def test_matches_stock_model_under_brute_force_mask(power, window, embedded_checkpoint):
    """p = 0 is a plain sliding window; every p equals the stock model given the dense mask."""
    ppa, _ = load_model(embedded_checkpoint, PowerPattern(power, window))
    reference = stock(embedded_checkpoint)
    ids, mask = left_padded_batch(ppa.config.vocab_size, [120, 83])
    with torch.no_grad():
        ours = ppa(ids, attention_mask=mask).logits
        masked = reference(ids, attention_mask=dense_mask(Fraction(power), window, mask)).logits
        full = reference(ids, attention_mask=mask).logits
    assert max_diff_on_real_tokens(ours, masked, mask) <= TOL
    # and the mask really masks: a sequence longer than w differs from full attention
    assert max_diff_on_real_tokens(ours, full, mask) > 1e-2


@pytest.mark.slow
def test_cached_decode_equals_full_forward(embedded_checkpoint):
    engine_model, _ = load_model(embedded_checkpoint, PowerPattern("1/2", 4))
    ids, mask = left_padded_batch(engine_model.config.vocab_size, [40, 25], seed=1)
    cached, refed, generated = cached_and_full_logits(engine_model, ids, mask, 24)
    assert (cached - refed).abs().max().item() <= logits_tolerance(engine_model, refed)
    assert torch.equal(refed.argmax(-1), generated)


@pytest.mark.slow
def test_left_padded_batch_equals_rows_alone(embedded_checkpoint):
    engine = HFEngine(embedded_checkpoint, PowerPattern("1/2", 8))
    prompts = ["<|im_start|>user\nWhat is 2+3? Explain.<|im_end|>\n<|im_start|>assistant\n",
               "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
               "How many clips did Natalia sell altogether in April and May?\nAnswer:",
               "Problem:\nFind x if 3x = 12.\n\nSolution:"]
    batch = engine.generate_batch(prompts, max_new_tokens=20)
    alone = [engine.generate_batch([p], max_new_tokens=20)[0] for p in prompts]
    assert batch == alone


@pytest.mark.slow
def test_static_cache_decode_ends_rows_where_generate_does(embedded_checkpoint):
    """The engine's own greedy loop (hf_graph: a static cache, on a GPU each step replayed from a
    CUDA graph, here eager) against generate(): rows that end at EOS, at a stop string and at the
    token limit come back with the same text, finish reason and token count."""
    engine = HFEngine(embedded_checkpoint, PowerPattern("1/2", 8))
    prompts = ["<|im_start|>user\nWhat is 2+3? Answer briefly.<|im_end|>\n<|im_start|>assistant\n",
               "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
               "How many clips did Natalia sell altogether in April and May?\nAnswer:",
               "The capital of France is"]
    stop = ("Question:", " is a")
    stock = engine.generate_batch(prompts, max_new_tokens=24, stop=stop)
    # a stop string after 8 tokens, an immediate EOS (1 token, the EOS), the token limit
    assert [(g.finish_reason, g.completion_tokens) for g in stock] == [("stop", 8), ("stop", 1), ("length", 24)]
    engine.graph_decode = True
    assert engine.generate_batch(prompts, max_new_tokens=24, stop=stop) == stock


@pytest.mark.slow
def test_nemotron_mask_reaches_only_attention_layers(tiny_nemotron):
    ppa, _ = load_model(tiny_nemotron, PowerPattern("1/2", 4))
    full = stock(tiny_nemotron)
    ids, _ = left_padded_batch(ppa.config.vocab_size, [160], seed=2)
    captured = {}

    def capture(name):
        def hook(module, args, kwargs, output):
            captured[name] = (args[0] if args else kwargs["hidden_states"], output[0] if isinstance(output, tuple) else output)
        return hook

    for tag, model in (("ppa", ppa), ("full", full)):
        handles = [layer.mixer.register_forward_hook(capture((tag, i)), with_kwargs=True)
                   for i, layer in enumerate(model.model.layers)]
        with torch.no_grad():
            model(ids)
        for h in handles:
            h.remove()
    kinds = [type(layer.mixer).__name__ for layer in ppa.model.layers]
    assert kinds[:2] == ["NemotronHMamba2Mixer", "NemotronHAttention"]
    # layer 0 (Mamba) sees the same input and gives the same output
    assert torch.equal(captured["ppa", 0][1], captured["full", 0][1])
    # layer 1 (attention) gets that same input, and PPA changes its output
    assert torch.equal(captured["ppa", 1][0], captured["full", 1][0])
    assert (captured["ppa", 1][1] - captured["full", 1][1]).abs().max() > 1e-3
    # a later Mamba layer, fed the PPA run's input, gives the PPA run's output: no mask reaches it
    with torch.no_grad():
        replay = full.model.layers[3].mixer(captured["ppa", 3][0])
    replay = replay[0] if isinstance(replay, tuple) else replay
    assert (replay - captured["ppa", 3][1]).abs().max() <= TOL


@pytest.mark.slow
def test_unregistered_mask_builder_fails_loudly(embedded_checkpoint, monkeypatch):
    """The silent failure: an attention function without its mask builder runs unmasked. We refuse."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    ppa, _ = load_model(embedded_checkpoint, PowerPattern("1/2", 8))
    monkeypatch.delitem(ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, "ppa_sdpa")
    with pytest.raises(RuntimeError, match="without a mask"):
        ppa(torch.tensor([[5, 6, 7, 8]]))


# The embedded model's heads are 64 wide, the tiny Llama's 8: the Triton kernels take powers of two
# from 16, flex attention's GPU kernels 16 and more, SDPA any. The choice is made from the config
# alone, so it is checked here without a GPU.
@pytest.mark.parametrize("model, spec, device, requested, chosen", [
    ("embedded", "ppa:p=1/2,w=64", "cuda", None, "ppa"),
    ("embedded", "powerattention:block=64,window=1,sink=1", "cuda", None, "flex"),
    ("embedded", "ppa:p=1/2,w=64", "cuda", "flex", "flex"),
    ("tiny", "ppa:p=1/2,w=64", "cuda", None, "sdpa"),
    ("tiny", "powerattention:block=64,window=1,sink=1", "cuda", None, "sdpa"),
    ("tiny", "ppa:p=1/2,w=64", "cpu", None, "sdpa"),
    ("embedded", "ppa:p=1/2,w=64", "cpu", None, "sdpa"),
])
def test_the_default_gpu_kernel_is_one_that_takes_the_models_heads(model, spec, device, requested, chosen,
                                                                    embedded_checkpoint, make_tiny_checkpoint, tmp_path):
    checkpoint = embedded_checkpoint if model == "embedded" else make_tiny_checkpoint(tmp_path / "tiny")
    assert attention_kernel(checkpoint, parse_spec(spec), device, requested) == chosen


@pytest.mark.parametrize("model, spec, requested", [
    ("tiny", "ppa:p=1/2,w=64", "ppa"),
    ("tiny", "ppa:p=1/2,w=64", "flex"),
    ("embedded", "powerattention:block=64,window=1,sink=1", "ppa"),  # no Triton kernel for block patterns
])
def test_a_gpu_kernel_that_cannot_run_the_model_is_refused_before_loading(model, spec, requested,
                                                                          embedded_checkpoint, make_tiny_checkpoint, tmp_path):
    checkpoint = embedded_checkpoint if model == "embedded" else make_tiny_checkpoint(tmp_path / "tiny")
    with pytest.raises(EngineError, match=f"--attn-kernel {requested} cannot run .*; use --attn-kernel sdpa"):
        attention_kernel(checkpoint, parse_spec(spec), "cuda", requested)


def test_attention_implementations_are_registered():
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    for name in hf_attention.ATTENTION_IMPLEMENTATIONS.values():
        assert name in AttentionInterface._global_mapping
        assert name in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping


def test_tokens_to_stop_finds_the_first_token_that_completes_a_stop_string():
    from ppa_eval.engines.hf import _tokens_to_stop

    text = ["Th", "e ", "ans", "wer", " is", ".", "\n\n", "Q"]
    holds = lambda head: "answer is." in "".join(head)  # noqa: E731
    assert _tokens_to_stop(list(range(len(text))), lambda rows: holds([text[i] for i in rows])) == 6
