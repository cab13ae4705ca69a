"""The engine interface's shared pieces that need no model: data-parallel shares."""

import itertools
import random

import pytest

from ppa_eval.engines.vllm_engine import balanced_shares


@pytest.mark.parametrize("count", [2, 3, 4])
def test_data_parallel_shares_are_a_balanced_partition(count):
    """Brute force over every assignment of 9 prompts: the greedy longest-first shares are a partition
    whose heaviest share is within 4/3 of the best possible (Graham's bound for this rule); and a
    batch sorted by length, as evaluate makes them, no longer sends all long prompts to one replica."""
    rng = random.Random(count)
    lengths = sorted(rng.randrange(100, 5000) for _ in range(9))
    shares = balanced_shares(lengths, count)
    assert sorted(i for share in shares for i in share) == list(range(9))
    heaviest = max(sum(lengths[i] for i in share) for share in shares)
    best = min(max(sum(lengths[i] for i, r in enumerate(assignment) if r == replica) for replica in range(count))
               for assignment in itertools.product(range(count), repeat=9))
    assert heaviest <= 4 / 3 * best
    contiguous = max(sum(lengths[i:i + -(-9 // count)]) for i in range(0, 9, -(-9 // count)))
    assert heaviest < contiguous


def test_fewer_prompts_than_replicas_leave_some_idle():
    assert sorted(map(len, balanced_shares([5, 7], 4))) == [0, 0, 1, 1]
