"""The prefill plan: the masked tiles' mask bits and the cost model's pair counts, against brute force."""

import pytest

pytest.importorskip("triton")

from ppa_eval.kernels import cost_model  # noqa: E402
from ppa_eval.kernels.reference import attended_distances  # noqa: E402
from ppa_eval.kernels.tables import offset_tables  # noqa: E402
from ppa_eval.kernels.tiles import row_bits  # noqa: E402
from ppa_eval.patterns import PowerPattern  # noqa: E402


@pytest.mark.parametrize("block_n", [32, 64])
@pytest.mark.parametrize("power, window, split", [("1/2", 4, 40), ("3/4", 8, 300), ("1/3", 0, 7)])
def test_row_bits_say_which_keys_of_a_tile_a_row_attends(power, window, split, block_n):
    length = 300
    attended = attended_distances(power, window, length)
    words = row_bits(offset_tables(PowerPattern(power, window), length, "cpu"), split, block_n).numpy()
    assert len(words) >= length + block_n - 1
    for first in range(-(block_n - 1), length):  # distance from the row's query to the tile's first key
        word = int(words[first + block_n - 1])
        for j in range(block_n):
            d = first - j
            assert (word >> j) & 1 == int(0 <= d < split and attended[d]), (first, j)


@pytest.mark.parametrize("n_queries, kv_len", [(37, 37), (45, 61), (130, 200)])
def test_pair_counts_match_enumeration(n_queries, kv_len):
    pattern = PowerPattern("3/4", 4)
    tables = offset_tables(pattern, kv_len, "cpu")
    attended = attended_distances("3/4", 4, kv_len)
    slots = range(kv_len - n_queries, kv_len)
    for split in (1, 4, 16, 50, kv_len):
        gathered = sum(1 for s in slots for d in range(split, s + 1) if attended[d])
        assert cost_model.gathered_pairs(tables.host_counts, split, n_queries, kv_len) == gathered
        block_m, block_n = 16, 32
        tiles = 0
        for q0 in range(0, n_queries, block_m):  # the kernel's walk: from the band's first key to the last query
            lo, hi = max(kv_len - n_queries + q0 - split + 1, 0), min(kv_len - n_queries + q0 + block_m, kv_len) - 1
            tiles += len(range(lo, hi + 1, block_n))
        assert cost_model.tile_pairs(split, n_queries, kv_len, block_m, block_n) == tiles * block_m * block_n


def test_dense_patterns_take_tiles_and_sparse_ones_gather():
    # Hand-checked ends: at p = 1 every distance is attended, so gathering any costs more than
    # tiling it; with p = 0 there is nothing beyond the window, so the tiles stop there; at
    # p = 1/3 (a few dozen distances at 32k) gathering beats tiling everything.
    def split(power, window=64, length=32768):
        return cost_model.choose_split(offset_tables(PowerPattern(power, window), length, "cpu"), length, length,
                                       (64, 64), 1, 40, 8)
    assert split(1) == 32768
    assert split(0) == 64
    assert split("1/3") < 32768
    assert cost_model.choose_split(offset_tables(PowerPattern("1/2", 64), 256, "cpu"), 256, 256, (64, 64), 1, 40, 8) == 256
