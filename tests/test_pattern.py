"""The attended set against a brute-force evaluation of the definition, in exact integers."""

import random
from fractions import Fraction

import numpy as np
import pytest

from ppa_eval.patterns import (
    PatternError,
    PowerPattern,
    full_causal,
    keys_per_query,
    mask_mod,
    parse_power,
    parse_window,
    sliding_window,
)
from reference import attends, floor_power


def brute_force_positions(p: Fraction, w: int, length: int) -> list[int]:
    floors = [floor_power(j, p) for j in range(length + 1)]
    return [j for j in range(1, length + 1) if j <= w or floors[j] - floors[j - 1] == 1]


rng = random.Random(1234)
POWERS = [Fraction(k, 8) for k in range(9)] + [Fraction(1, 3), Fraction(9, 10)]
POWERS += [Fraction(rng.randint(1, 999), 1000) for _ in range(10)]
POWERS += [Fraction(rng.randint(1, 99), rng.randint(100, 400)) for _ in range(10)]


@pytest.mark.parametrize("p", POWERS, ids=str)
def test_attended_set_equals_brute_force(p):
    length = 8192
    brute = brute_force_positions(p, 0, length)
    for w in (0, 1, 16, 64):
        expected = sorted(set(brute) | set(range(1, min(w, length) + 1)))
        assert PowerPattern(p, w).relative_positions(length).tolist() == expected
    # shorter lengths are prefixes, including lengths that are not powers of anything
    for short in (1, 2, 63, 100, 1000):
        assert PowerPattern(p, 16).relative_positions(short).tolist() == [j for j in sorted(set(brute) | set(range(1, 17))) if j <= short]


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


def test_keys_per_query_counts_the_causal_square():
    pattern = PowerPattern("1/2", 4)
    length = 300
    dense = np.array([[attends(pattern.power, pattern.window, i, k) for k in range(1, length + 1)] for i in range(1, length + 1)])
    assert keys_per_query(pattern, length).tolist() == dense.sum(axis=1).tolist()


def test_mask_mod_matches_definition_including_causality():
    torch = pytest.importorskip("torch")
    pattern = PowerPattern("3/4", 5)
    fn = mask_mod(pattern, 128)
    q = torch.arange(100)[:, None]
    kv = torch.arange(100)[None, :]
    got = fn(0, 0, q, kv)
    expected = torch.tensor([[attends(pattern.power, pattern.window, i + 1, k + 1) for k in range(100)] for i in range(100)])
    assert torch.equal(got, expected)
