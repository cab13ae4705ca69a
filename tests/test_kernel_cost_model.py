"""The prefill plan: the masked tiles' mask bits and the cost model's pair counts, against brute force."""

from collections import Counter

import pytest

from ppa_eval.kernels import cost_model
from ppa_eval.kernels.reference import attended_distances
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.kernels.tiles import row_bits
from ppa_eval.patterns import PowerPattern

H200 = cost_model.FITS["H200"]


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


@pytest.mark.parametrize("n_queries, kv_len", [(37, 37), (45, 61), (130, 200)])
def test_walks_match_enumeration(n_queries, kv_len):
    """The serial length of the longest program of each kernel: key tiles walked, far distances walked."""
    tables = offset_tables(PowerPattern("3/4", 4), kv_len, "cpu")
    attended = attended_distances("3/4", 4, kv_len)
    block_m, block_n = 16, 32
    for split in (1, 4, 16, 50, kv_len):
        work = cost_model.work(split, tables.host_counts, n_queries, kv_len, (block_m, block_n), 2, 6, 3)
        walks = [len(range(max(kv_len - n_queries + q0 - split + 1, 0), min(kv_len - n_queries + q0 + block_m, kv_len), block_n))
                 for q0 in range(0, n_queries, block_m)]
        assert work.tile_walk == max(walks) * block_n
        far = sum(1 for d in range(split, kv_len) if attended[d])  # the last query reaches every distance
        assert (work.gather_walk, work.gathered_rows > 0) == (far, far > 0)
        assert work.gathered_pairs == 2 * 3 * cost_model.gathered_pairs(tables.host_counts, split, n_queries, kv_len)


def test_a_launch_over_chunks_adds_their_pairs_and_keeps_the_longest_walk():
    # One vLLM step's chunks in one launch: a whole prompt and two short chunks at the ends of
    # longer sequences (one of them twice). Pairs and rows are each chunk's sum; the walks are the
    # longest any chunk's program takes, since the programs run side by side.
    tables = offset_tables(PowerPattern("3/4", 4), 200, "cpu")
    chunks = {(37, 37): 1, (5, 200): 2, (20, 150): 1}
    for split in (1, 16, 50, 200):
        alone = [cost_model.work(split, tables.host_counts, n, kv_len, (16, 32), 1, 6, 3)
                 for (n, kv_len), count in chunks.items() for _ in range(count)]
        launch = cost_model.launch_work(split, tables.host_counts, Counter(chunks), (16, 32), 6, 3)
        assert launch.tile_pairs == sum(w.tile_pairs for w in alone)
        assert launch.gathered_pairs == sum(w.gathered_pairs for w in alone)
        assert launch.gathered_rows == sum(w.gathered_rows for w in alone)
        assert (launch.tile_walk, launch.gather_walk) == (max(w.tile_walk for w in alone), max(w.gather_walk for w in alone))


def test_dense_patterns_take_tiles_and_sparse_ones_gather():
    # Hand-checked ends: at p = 1 every distance is attended, so gathering any costs more than
    # tiling it; with p = 0 there is nothing beyond the window, so the tiles stop there; at
    # p = 1/3 (a few dozen distances at 32k) gathering beats tiling everything.
    def split(power, window=64, length=32768):
        return cost_model.choose_split(offset_tables(PowerPattern(power, window), length, "cpu"), ((length, length),),
                                       (64, 64), 40, 8, H200)
    assert split(1) == 32768
    assert split(0) == 64
    assert split("1/3") < 32768
    assert cost_model.choose_split(offset_tables(PowerPattern("1/2", 64), 256, "cpu"), ((256, 256),), (64, 64), 40, 8,
                                   H200) == 256


def test_a_short_chunk_of_a_long_sequence_gathers():
    # vLLM's last chunk of a prompt, or the uncached tail after a prefix-cache hit: 16 queries at the
    # end of 8,192 tokens, 9/3 heads of 64, p = 1/2. Measured on the H200 (prefill_costs.md): splits
    # 128-1,024 take 0.04-0.05 ms, 2,048 0.07, 4,096 0.12 and all tiles 0.22 (9 programs each walk
    # all 8,192 keys); priced by pairs alone, the model chose 4,096 (without its walk terms) or all
    # tiles (the model before them).
    tables = offset_tables(PowerPattern("1/2", 64), 8192, "cpu")
    assert cost_model.choose_split(tables, ((16, 8192),), (64, 64), 9, 3, H200) <= 1024


@pytest.mark.parametrize("gpu, fit", [("NVIDIA H200", "H200"), ("NVIDIA H200 NVL", "H200"),
                                      ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100"),
                                      ("NVIDIA A100-SXM4-80GB", None), ("NVIDIA GeForce RTX 4090", None)])
def test_each_gpu_takes_its_own_fit_and_others_the_unfitted_costs(gpu, fit, monkeypatch):
    expected = cost_model.FITS.get(fit, cost_model.UNFITTED)
    assert cost_model.fit_for(gpu) is expected
    monkeypatch.setattr("torch.cuda.get_device_name", lambda device=None: gpu)
    cost_model.costs_for.cache_clear()
    try:
        assert cost_model.costs_for("cuda") is expected
    finally:
        cost_model.costs_for.cache_clear()
    assert cost_model.costs_for("cpu") is cost_model.UNFITTED
