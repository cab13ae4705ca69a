"""Every pattern family against a brute-force O(L^2) evaluation of its definition in plain integers.

The references below share nothing with ppa_eval.patterns: reference.spec_attends() is the issue's definition
written out (0-based query i, key k <= i), reference.attends() is PPA's in exact integers, the receptive
field is a BFS over the explicit boolean matrix, and costs are sums over that matrix.
"""

import json
import random
from collections import deque
from fractions import Fraction

import numpy as np
import pytest
import torch

from ppa_eval.cli import main
from ppa_eval.compat import config_entries, pattern_from_config
from ppa_eval.patterns import (PatternError, PowerAttention, PowerPattern, format_spec, full_causal, mask_mod, match_cost,
                               parse_power, parse_spec, parse_window, sliding_window)
from ppa_eval.patterns.cost import MAX_DENOMINATOR
from reference import attends, brute_matrix, cached_and_full_logits, floor_power, left_padded_batch


def brute_layers(matrix: np.ndarray) -> list:
    """BFS backwards from the last position over the explicit matrix; None where unreachable."""
    last = len(matrix) - 1
    layers = [None] * len(matrix)
    layers[last] = 0
    queue = deque([last])
    while queue:
        i = queue.popleft()
        for k in np.flatnonzero(matrix[i]):
            if layers[k] is None:
                layers[k] = layers[i] + 1
                queue.append(k)
    return layers


def ppa_eval_pattern(capsys, *args) -> tuple[int, str, str]:
    """`ppa-eval pattern ARGS` in this process: its exit status, stdout and stderr. (test_cli.py runs the
    installed command in a process of its own; here a process start per call would cost more than the check.)"""
    try:
        status = main(["pattern", *map(str, args)])
    except SystemExit as error:  # argparse's errors
        status = error.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def ppa_eval_json(capsys, *args):
    status, out, err = ppa_eval_pattern(capsys, *args, "--json")
    assert status == 0, err[-2000:]
    return json.loads(out)


SPECS = [
    "ppa:p=3/4,w=4", "ppa:p=1/2,w=0,sink=3", "ppa:p=1/3,w=2,sink=1", "ppa:p=9/10,w=1",
    "window:w=5", "window:w=3,sink=4", "full",
    "powerattention:block=1,window=1,sink=0", "powerattention:block=1,window=3,sink=2",
    "powerattention:block=4,window=1,sink=1", "powerattention:block=3,window=2,sink=0",
    "powerattention:block=5,window=4,sink=2",
]


@pytest.mark.parametrize("spec", SPECS)
def test_cli_json_equals_brute_force(spec, capsys):
    for length in (1, 7, 50, 97):
        matrix = brute_matrix(spec, length)
        out = ppa_eval_json(capsys, "--attention", spec, "--length", length, "--layers", 3)
        assert out["spec"] == spec and out["length"] == length
        assert out["relative_positions"] == [length - k for k in range(length - 1, -1, -1) if matrix[-1, k]]
        assert out["pairs"] == int(matrix.sum())
        assert out["dense_pairs"] == length * (length + 1) // 2
        layers = brute_layers(matrix)
        field = out["receptive_field"]
        assert field["coverage"] == sum(x is not None and x <= 3 for x in layers) / length
        assert field["layers_to_cover_all"] == (None if None in layers else max(layers))
        assert field["unreachable_positions"] == layers.count(None)


@pytest.mark.parametrize("spec", SPECS)
def test_layers_and_counts_equal_brute_force_in_process(spec):
    """The same at more lengths, through the functions the command calls."""
    from ppa_eval.patterns import keys_per_query, layers_to_last

    pattern = parse_spec(spec)
    for length in (2, 3, 16, 33, 64, 130):
        matrix = brute_matrix(spec, length)
        assert keys_per_query(pattern, length).tolist() == matrix.sum(axis=1).tolist()
        assert [None if x < 0 else x for x in layers_to_last(pattern, length).tolist()] == brute_layers(matrix)


@pytest.mark.parametrize("spec", SPECS)
def test_mask_function_equals_brute_force(spec):
    length = 70
    got = mask_mod(parse_spec(spec), 128)(0, 0, torch.arange(length)[:, None], torch.arange(length)[None, :])
    assert np.array_equal(got.numpy(), brute_matrix(spec, length))


def test_ppa_shorthand_is_the_ppa_spec(capsys):
    shorthand = ppa_eval_json(capsys, "--power", "0.75", "--window", "4", "--length", 200)
    spec = ppa_eval_json(capsys, "--attention", "ppa:p=3/4,w=4", "--length", 200)
    assert shorthand == spec


def test_fast_frontier_paths_equal_brute_force_beyond_the_direct_threshold():
    """Large frontiers switch the BFS from outer sums to FFT convolutions; check a case that does."""
    from ppa_eval.patterns import layers_to_last
    from ppa_eval.patterns import receptive_field

    length = 600
    spec = "ppa:p=7/8,w=3,sink=2"
    old = receptive_field._DIRECT_SUMSET
    receptive_field._DIRECT_SUMSET = 16
    try:
        fast = layers_to_last(parse_spec(spec), length).tolist()
    finally:
        receptive_field._DIRECT_SUMSET = old
    assert [None if x < 0 else x for x in fast] == brute_layers(brute_matrix(spec, length))


@pytest.mark.parametrize("text, target_spec, length", [
    ("ppa:w=16", "powerattention:block=8,window=1,sink=1", 2048),
    ("window", "ppa:p=1/2,w=16", 1500),
    ("powerattention:block=16,sink=1", "ppa:p=3/4,w=64", 4096),
    ("ppa:w=8,sink=4", "window:w=200", 1024),
])
def test_match_cost_picks_the_nearest_parameter(text, target_spec, length):
    from ppa_eval.patterns import pairs

    target = pairs(parse_spec(target_spec), length)
    chosen = match_cost(text, target, length)
    gap = abs(pairs(chosen, length) - target)
    # brute force over the parameter's whole range (p: every fraction with a small denominator)
    if isinstance(chosen, PowerAttention):
        others = [PowerAttention(chosen.block, w, chosen.sink) for w in range(1, length // chosen.block + 2)]
    elif chosen.power == 0:
        others = [PowerPattern(0, w, chosen.sink) for w in range(length + 1)]
    else:
        others = [PowerPattern(Fraction(n, d), chosen.window, chosen.sink) for d in range(1, 60) for n in range(d + 1)]
        assert chosen.power.denominator <= MAX_DENOMINATOR
    assert gap <= min(abs(pairs(o, length) - target) for o in others)


@pytest.mark.slow
def test_match_cost_through_the_cli(capsys):
    target = "powerattention:block=16,window=1,sink=1"
    out = ppa_eval_json(capsys, "--attention", "ppa:w=16", "--match-cost", target, "--length", 512)
    assert out["matched"] == {"spec": target, "pairs": int(brute_matrix(target, 512).sum())}
    assert out["spec"].startswith("ppa:p=") and out["spec"].endswith(",w=16")
    assert out["pairs"] == int(brute_matrix(out["spec"], 512).sum())


@pytest.mark.parametrize("spec", SPECS + ["ppa:p=0.75,w=64", "powerattention", "window", "ppa:p=1,w=0"])
def test_spec_round_trips(spec):
    pattern = parse_spec(spec)
    assert parse_spec(format_spec(pattern)) == pattern
    assert pattern_from_config(config_entries(pattern)) == pattern


def test_canonical_forms():
    assert format_spec(parse_spec("ppa:p=0.75")) == "ppa:p=3/4,w=64"
    assert format_spec(parse_spec("ppa:p=0,w=8")) == "window:w=8"
    assert format_spec(parse_spec("ppa:p=1,w=0")) == "full"
    assert format_spec(parse_spec("powerattention")) == "powerattention:block=64,window=1,sink=1"
    assert parse_spec("window:w=8,sink=4") == PowerPattern(0, 8, 4)


def test_configs_old_and_new():
    assert pattern_from_config({"ppa_power": "3/4", "ppa_window": 32}) == PowerPattern("3/4", 32)
    assert pattern_from_config({"ppa": {"power": 0.5}}) == PowerPattern("1/2", 64)
    assert pattern_from_config({"ppa_attention": "powerattention:block=64,window=1,sink=1"}) == PowerAttention(64, 1, 1)
    assert pattern_from_config({"model_type": "llama"}) is None
    assert config_entries(PowerPattern("3/4", 64)) == {"ppa_attention": "ppa:p=3/4,w=64", "ppa_power": "3/4",
                                                       "ppa_window": 64}
    assert config_entries(PowerPattern("3/4", 64, 4)) == {"ppa_attention": "ppa:p=3/4,w=64,sink=4"}
    with pytest.raises(PatternError, match="keep only ppa_attention"):
        pattern_from_config({"ppa_attention": "window:w=64", "ppa_power": "3/4"})


@pytest.mark.parametrize("spec, fragment", [
    ("dilated:w=3", "unknown attention pattern"),
    ("ppa:w=64", "ppa needs p"),
    ("ppa:p=3/4,x=1", "ppa takes p, w, sink"),
    ("ppa:p=3/4,p=1/2", "given twice"),
    ("ppa:p", "not key=value"),
    ("ppa:p=3/2", "power must be in [0, 1]"),
    ("window:w=-1", "window must be >= 0"),
    ("powerattention:block=0", "block must be >= 1"),
    ("powerattention:window=0", "window must be >= 1 blocks"),
    ("powerattention:sink=x", "sink must be a whole number"),
    ("full:w=3", "full takes no keys"),
])
def test_bad_specs_name_the_fix(spec, fragment):
    with pytest.raises(PatternError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(spec)


@pytest.mark.parametrize("args, fragment", [
    (["--attention", "ppa:p=3/4", "--power", "1/2"], "either --attention SPEC or the PPA shorthand"),
    (["--attention", "full", "--match-cost", "window:w=4"], "full has no parameter"),
    (["--attention", "window:w=4", "--match-cost", "full"], "drop w=4"),
    (["--attention", "nope"], "unknown attention pattern"),
])
def test_cli_errors(args, fragment, capsys):
    status, _, err = ppa_eval_pattern(capsys, *args, "--length", "64")
    assert status == 2 and fragment in err, err


def test_plot_with_receptive_field(tmp_path, capsys):
    status, out, err = ppa_eval_pattern(capsys, "--attention", "powerattention:block=4,window=1,sink=1",
                                        "--length", "300", "--layers", "4", "--plot", tmp_path / "m.png")
    assert status == 0, err
    assert "attended pairs" in out
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- PPA's attended set at long lengths and many powers, against floor(j^p) in exact integers

rng = random.Random(1234)
POWERS = [Fraction(k, 8) for k in range(9)] + [Fraction(1, 3), Fraction(9, 10)]
POWERS += [Fraction(rng.randint(1, 999), 1000) for _ in range(10)]
POWERS += [Fraction(rng.randint(1, 99), rng.randint(100, 400)) for _ in range(10)]


@pytest.mark.parametrize("p", POWERS, ids=str)
def test_ppa_attended_set_equals_brute_force(p):
    length = 8192
    floors = [floor_power(j, p) for j in range(length + 1)]
    brute = {j for j in range(1, length + 1) if floors[j] - floors[j - 1] == 1}
    for w in (0, 1, 16, 64):
        assert PowerPattern(p, w).relative_positions(length).tolist() == sorted(brute | set(range(1, w + 1)))
    # shorter lengths are prefixes, including lengths that are not powers of anything
    for short in (1, 2, 63, 100, 1000):
        expected = [j for j in sorted(brute | set(range(1, 17))) if j <= short]
        assert PowerPattern(p, 16).relative_positions(short).tolist() == expected


def test_paper_examples():
    assert PowerPattern("1/2", 0).relative_positions(100).tolist() == [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]
    assert PowerPattern("1/3", 0).relative_positions(100).tolist() == [1, 8, 27, 64]
    assert sliding_window(3).relative_positions(100).tolist() == [1, 2, 3]
    assert full_causal().relative_positions(50).tolist() == list(range(1, 51))


@pytest.mark.parametrize("power, dtype", [("1/3", np.float64), ("2/3", np.float64), ("9/10", np.float32)])
def test_exact_where_a_float_pow_mask_goes_wrong(power, dtype):
    """The pattern equals the integer brute force at every j to 4,096, at powers where a float
    `pow` mask (floor(j**p) in float64 or float32) marks some j wrongly: 64 ** (1/3) is
    3.9999999999999996 in float64."""
    p, length = Fraction(power), 4096
    exact = [j for j in range(1, length + 1) if attends(p, 0, length, length - j + 1)]
    j = np.arange(1, length + 1).astype(dtype)
    steps = np.floor(j ** dtype(float(p))) - np.floor((j - 1) ** dtype(float(p)))
    assert PowerPattern(power, 0).relative_positions(length).tolist() == exact
    assert j[steps == 1].astype(int).tolist() != exact  # the case this exactness exists for


@pytest.mark.parametrize(
    "text, expected",
    [("0.75", Fraction(3, 4)), ("1/3", Fraction(1, 3)), ("0.3333", Fraction(3333, 10000)), ("0", 0), ("1", 1),
     (" 7/8 ", Fraction(7, 8)), (".5", Fraction(1, 2)), ("1e-1", Fraction(1, 10)), (0.1, Fraction(1, 10))],
)
def test_parse_power_is_exact(text, expected):
    assert parse_power(text) == expected


@pytest.mark.parametrize("text", ["1.5", "-0.1", "nan", "inf", "abc", "1/0", "3/2", "", float("nan")])
def test_parse_power_rejects(text):
    with pytest.raises(PatternError, match="power"):
        parse_power(text)


@pytest.mark.parametrize("text", ["-1", "2.5", "x"])
def test_parse_window_rejects(text):
    with pytest.raises(PatternError, match="window"):
        parse_window(text)


# ---- the transformers engine: every family's SDPA mask against the stock model given the brute-force mask

ENGINE_SPECS = ["ppa:p=1/2,w=4,sink=3", "window:w=6,sink=2", "powerattention:block=1,window=1,sink=1",
                "powerattention:block=8,window=1,sink=1", "powerattention:block=5,window=4,sink=0"]


def brute_batch_mask(spec, attention_mask):
    """[B, 1, W, W]: the pattern on each row's real tokens, counted from its first real token."""
    batch, width = attention_mask.shape
    out = torch.eye(width, dtype=torch.bool).repeat(batch, 1, 1)  # padding queries see themselves (no NaN rows)
    for row in range(batch):
        start = width - int(attention_mask[row].sum())
        out[row, start:, start:] = torch.as_tensor(brute_matrix(spec, width - start))
    return out[:, None]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A random 2-layer Llama (no tokenizer: these tests feed token ids)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def engine_model(checkpoint, spec):
    """The transformers engine's SDPA attention path (what ppa_eval.engines.hf.load_model sets up)."""
    from transformers import AutoModelForCausalLM

    from ppa_eval.engines import hf_attention

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="ppa_sdpa")
    hf_attention.set_pattern(model.config, parse_spec(spec))
    return model.eval()


@pytest.mark.parametrize("spec", ENGINE_SPECS)
def test_sdpa_engine_equals_stock_model_under_brute_force_mask(spec, tiny_llama):
    from transformers import AutoModelForCausalLM

    model = engine_model(tiny_llama, spec)
    stock = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32, attn_implementation="sdpa").eval()
    ids, mask = left_padded_batch(model.config.vocab_size, [90, 61, 77])
    real = mask.bool()
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits[real]
        masked = stock(ids, attention_mask=brute_batch_mask(spec, mask)).logits[real]
        full = stock(ids, attention_mask=mask).logits[real]
    assert (ours - masked).abs().max().item() <= 1e-4
    assert (ours - full).abs().max().item() > 1e-3  # the pattern really masks


def test_cached_decode_counts_sinks_and_blocks_from_the_first_real_token(tiny_llama):
    model = engine_model(tiny_llama, "powerattention:block=4,window=1,sink=1")
    ids, mask = left_padded_batch(model.config.vocab_size, [30, 19], seed=1)
    cached, refed, _ = cached_and_full_logits(model, ids, mask, 12)
    assert (cached - refed).abs().max().item() <= 1e-4


def test_config_names_the_pattern_and_the_kernel_path_refuses_other_families(tiny_llama):
    from transformers import AutoConfig
    from transformers.masking_utils import causal_mask_function

    from ppa_eval.engines.hf_attention import KernelMaskError, _ppa_kernel_mask, pattern_of, set_pattern

    config = AutoConfig.from_pretrained(tiny_llama)
    set_pattern(config, PowerPattern("3/4", 64))
    assert (config.ppa_power, config.ppa_window, config.ppa_attention) == ("3/4", 64, "ppa:p=3/4,w=64")
    set_pattern(config, PowerAttention(64, 1, 1))
    assert pattern_of(config) == PowerAttention(64, 1, 1) and config.ppa_power is None
    with pytest.raises(KernelMaskError, match="runs PPA only"):
        _ppa_kernel_mask(1, 4, 4, mask_function=causal_mask_function, config=config)
    set_pattern(config, PowerPattern("1/2", 8, 4))
    assert _ppa_kernel_mask(1, 4, 4, mask_function=causal_mask_function, config=config).pattern == PowerPattern("1/2", 8, 4)
