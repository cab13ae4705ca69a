"""The family registry: a family found through the entry point group `ppa_eval.patterns` is spelled,
named, ordered, costed and masked like the built-in ones, and a bad plug-in is named, not a
traceback. Fast: the toy family of tests/plugins/ppa_eval_dilated is imported from its source
directory and announced by a stand-in for importlib.metadata (test_pattern_plugin.py installs it
for real)."""

from fractions import Fraction
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import torch

from ppa_eval.patterns import (PatternError, PowerAttention, PowerPattern, format_spec, keys_per_query, layers_to_last,
                               mask_mod, match_cost, pairs, parse_spec, sort_key)
from ppa_eval.patterns import families

PLUGIN_SOURCE = Path(__file__).resolve().parent / "plugins" / "ppa_eval_dilated"
GROUP = "ppa_eval.patterns"


def dilated_matrix(stride: int, w: int, sink: int, length: int) -> np.ndarray:
    """The toy family's definition over every pair (query i, key k): k <= i, and i - k a multiple of
    stride below w * stride, or k a sink."""
    i, k = np.arange(length)[:, None], np.arange(length)[None, :]
    return (k <= i) & (((i - k) % stride == 0) & (i - k < w * stride) | (k < sink))


@pytest.fixture
def announce(monkeypatch):
    """announce(name=value, ...): these entry points, and only these, are what importlib.metadata finds."""
    monkeypatch.syspath_prepend(str(PLUGIN_SOURCE))

    def announce(**entries):
        points = [EntryPoint(name, value, GROUP) for name, value in entries.items()]
        monkeypatch.setattr(families, "entry_points", lambda group: points if group == GROUP else [])
        families.families.cache_clear()
        families.spellings.cache_clear()

    yield announce
    families.families.cache_clear()
    families.spellings.cache_clear()


def test_an_installed_family_is_spelled_named_and_ordered_like_the_built_in_ones(announce):
    announce(dilated="ppa_eval_dilated:Dilated")
    pattern = parse_spec("dilated:stride=3,w=8,sink=2")
    assert type(pattern).__name__ == "Dilated" and (pattern.stride, pattern.w, pattern.sink) == (3, 8, 2)
    assert format_spec(pattern) == "dilated:stride=3,w=8,sink=2"
    assert format_spec(parse_spec("dilated")) == "dilated:stride=2,w=64"  # the defaults, sink 0 left out
    assert parse_spec(format_spec(pattern)) == pattern
    assert pattern.run_name() == "dilated_stride3_w8_sink2" and pattern.series() == "dilated+sink2"
    order = [parse_spec(s) for s in ("dilated:stride=3,w=8", "powerattention", "full", "dilated:stride=2,w=8",
                                     "window:w=4")]
    assert sorted(order, key=sort_key) == [PowerPattern(0, 4), PowerPattern(1, 0), PowerAttention(),
                                          parse_spec("dilated:stride=2,w=8"), parse_spec("dilated:stride=3,w=8")]
    with pytest.raises(PatternError, match="dilated takes stride, w, sink, not 'p'"):
        parse_spec("dilated:p=1/2")
    with pytest.raises(PatternError, match="stride must be >= 1"):
        parse_spec("dilated:stride=0")


def test_an_installed_familys_mask_counts_and_cost_equal_brute_force(announce):
    announce(dilated="ppa_eval_dilated:Dilated")
    for stride, w, sink in [(3, 4, 0), (2, 5, 3), (1, 6, 1), (5, 2, 0)]:
        pattern = parse_spec(f"dilated:stride={stride},w={w},sink={sink}")
        matrix = dilated_matrix(stride, w, sink, 60)
        got = mask_mod(pattern, 64)(0, 0, torch.arange(60)[:, None], torch.arange(60)[None, :])
        assert np.array_equal(got.numpy(), matrix)
        assert keys_per_query(pattern, 60).tolist() == matrix.sum(axis=1).tolist()
        reached = layers_to_last(pattern, 60)
        assert (reached == 1).tolist() == [bool(matrix[59, k]) and k != 59 for k in range(60)]
    target = pairs(parse_spec("window:w=20"), 300)
    chosen = match_cost("dilated:stride=3", target, 300)  # the family's knob: w
    gaps = {w: abs(int(dilated_matrix(3, w, 0, 300).sum()) - target) for w in range(1, 101)}
    assert chosen.stride == 3 and gaps[chosen.w] == min(gaps.values())


def test_a_plugin_that_is_no_family_or_does_not_load_is_named(announce):
    announce(broken="ppa_eval_no_such_module:Family")
    with pytest.raises(PatternError, match=r"the pattern family broken \(ppa_eval_no_such_module:Family\) does not "
                                           r"load: .*; fix or uninstall"):
        format_spec(PowerPattern(1, 0))
    announce(notafamily="fractions:Fraction")
    with pytest.raises(PatternError, match="notafamily = fractions:Fraction .* is not a BlockPattern subclass"):
        format_spec(PowerPattern(1, 0))
    announce(again="ppa_eval.patterns:PowerAttention")
    with pytest.raises(PatternError, match="two pattern families call themselves 'powerattention'"):
        match_cost("window", 10, 10)


def test_the_built_in_families_keep_the_names_results_have():
    """Run directories and manifests under results/ were written with these names and fields."""
    from ppa_eval.runs import pattern_fields, run_name

    assert run_name("m", parse_spec("ppa:p=3/4,w=64")) == "m__p3-4_w64"
    assert run_name("m", parse_spec("full")) == "m__p1_w0"
    assert run_name("m", parse_spec("window:w=64,sink=4")) == "m__window_w64_sink4"
    assert run_name("m", parse_spec("powerattention")) == "m__powerattention_block64_window1_sink1"
    assert pattern_fields(parse_spec("ppa:p=0.5,w=16")) == {"attention": "ppa:p=1/2,w=16", "power": "1/2",
                                                            "window": 16}
    assert pattern_fields(parse_spec("powerattention")) == {"attention": "powerattention:block=64,window=1,sink=1"}
    assert [parse_spec(s).series() for s in ("ppa:p=1/2", "window:w=8,sink=4", "full", "powerattention")] == [
        "ppa", "window+sink4", "full", "powerattention"]
    assert Fraction(parse_spec("ppa:p=0.25").fields()["power"]) == Fraction(1, 4)
