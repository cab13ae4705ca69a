"""FlashAttention-4's masked prefill (flash4.py): its tile lists and mask words against brute force
(anywhere), and its output against the float64 reference (on an SM90 GPU with flash-attn-4)."""

import re
import warnings

import pytest
import torch

from ppa_eval.kernels import cost_model, flash4, ppa_attention
from ppa_eval.kernels.reference import attended_distances, masked_attention, relative_error
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.patterns import PowerPattern


@pytest.mark.parametrize("power, window, kv_len, tile", [("1/2", 4, 203, 16), ("3/4", 40, 160, 16),
                                                          ("1/3", 0, 300, 32), ("7/8", 64, 130, 128)])
def test_tile_lists_name_every_tile_with_an_attended_pair(power, window, kv_len, tile):
    attended = attended_distances(power, window, kv_len)
    lists = flash4.tile_lists(offset_tables(PowerPattern(power, window), kv_len, "cpu"), kv_len, tile)
    n = -(-kv_len // tile)
    masked, full = set(), set()
    for i in range(n):
        for j in range(i + 1):
            pairs = [attended[q - k] if k <= q else None for q in range(i * tile, min(i * tile + tile, kv_len))
                     for k in range(j * tile, j * tile + tile)]
            if any(pairs):
                (full if all(p is not None and p for p in pairs) else masked).add((i, j))

    def listed(counts, indices):
        return {(i, int(j)) for i in range(n) for j in indices[i, :counts[i]]}
    assert listed(lists.masked_counts, lists.masked) == masked
    assert listed(lists.full_counts, lists.full) == full
    assert lists.visited == len(masked) + len(full)
    for i in range(n):  # FA4 walks each list in order
        assert list(lists.masked[i, :lists.masked_counts[i]]) == sorted(lists.masked[i, :lists.masked_counts[i]])
    if window >= 2 * tile:
        assert full, "a window of two tiles makes the tile below the diagonal full"


def test_row_words_hold_each_threads_scores_of_a_row():
    """Entry d + tile of the table, bit i: is the key ROW_COLUMNS[i] columns after the thread's first
    one attended by a query d keys after that first one? Against the distance list, pair by pair."""
    kv_len, tile = 203, 16
    lists = flash4.tile_lists(offset_tables(PowerPattern("1/2", 4), kv_len, "cpu"), kv_len, tile)
    words = lists.row_words.numpy().view("uint32")
    attended = attended_distances("1/2", 4, kv_len)
    n = -(-kv_len // tile)
    assert len(words) == n * tile + tile  # the farthest distance a padded query row reaches, + tile
    assert list(flash4.ROW_COLUMNS[:6]) == [0, 1, 8, 9, 16, 17] and flash4.ROW_COLUMNS[-1] < flash4.WORD_SPAN
    for d in range(-tile, n * tile):
        for bit, column in enumerate(flash4.ROW_COLUMNS):
            distance = d - column
            expected = 0 <= distance < kv_len and attended[distance]
            assert (words[d + tile] >> bit) & 1 == expected, (d, bit)


@pytest.mark.parametrize("power, length, batch, expected", [("7/8", 8192, 2, True), ("3/4", 32768, 1, True),
                                                             ("1/2", 32768, 1, False), ("0", 8192, 2, False)])
def test_cost_model_gives_flash4_the_dense_patterns_only(power, length, batch, expected):
    """With the H200's constants: FA4 where every tile is needed, the gather where p is small."""
    tables = offset_tables(PowerPattern(power, 64), length, "cpu")
    lists = flash4.tile_lists(tables, length)
    assert cost_model.flash4_is_cheaper(tables, lists.visited, len(lists.masked_counts), length, (64, 64), batch,
                                        40, 8, cost_model.FITS["H200"]) == expected


needs_flash4 = pytest.mark.skipif(
    not (torch.cuda.is_available() and flash4.runs(torch.empty(1, 1, 1, 128, device="cuda"),
                                                   offset_tables(PowerPattern("1/2", 4), 8, "cpu"))),
    reason="FlashAttention-4 at the tested release on an SM90 GPU")


@needs_flash4
@pytest.mark.parametrize("power, window, length, heads, head_dim", [
    ("3/4", 64, 2048, (40, 8), 128), ("7/8", 64, 1000, (40, 8), 128),  # odd length: partial last tiles
    ("1/2", 300, 1500, (9, 3), 64),    # a window of two tiles: full tiles without mask
    ("1/3", 0, 777, (10, 2), 64),      # power positions only
])
def test_flash4_prefill_matches_reference(power, window, length, heads, head_dim):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, heads[0], length, head_dim, generator=gen).to("cuda", torch.bfloat16)
    k, v = (torch.randn(2, heads[1], length, head_dim, generator=gen).to("cuda", torch.bfloat16) for _ in range(2))
    pattern = PowerPattern(power, window)
    tables = offset_tables(pattern, length, "cuda")
    out = torch.full_like(q, float("nan"))
    flash4.prefill(q, k, v, out, flash4.tile_lists(tables, length), head_dim**-0.5)
    ref = masked_attention(q, k, v, attended_distances(power, window, length), scale=head_dim**-0.5)
    assert not out.isnan().any()
    assert relative_error(out, ref) <= 1e-2


@needs_flash4
def test_whole_sequences_go_to_flash4_where_the_model_says(monkeypatch):
    calls = []
    monkeypatch.setattr(flash4, "prefill", lambda *args: calls.append(args) or args[3])
    q, k, v = (torch.zeros(2, h, 8192, 128, device="cuda", dtype=torch.bfloat16) for h in (40, 8, 8))
    ppa_attention(q, k, v, PowerPattern("7/8", 64))
    assert len(calls) == 1
    ppa_attention(q, k, v, PowerPattern("7/8", 64, sink=4))  # sinks stay with the Triton kernels
    ppa_attention(q[:, :, -100:], k, v, PowerPattern("7/8", 64))  # so do chunks
    assert len(calls) == 1


@pytest.fixture
def fresh_fa4(monkeypatch):
    """flash4._fa4 imported afresh under the test's monkeypatches, and forgotten afterwards."""
    flash4._fa4.cache_clear()
    yield monkeypatch
    flash4._fa4.cache_clear()


def not_installed(name):
    raise flash4.metadata.PackageNotFoundError(name)


def test_another_flash4_release_falls_back_to_triton_with_a_warning(fresh_fa4):
    fresh_fa4.setattr(flash4.metadata, "version", lambda name: "4.0.0b99")
    with pytest.warns(UserWarning, match="runs it only at 4.0.0b36.*prefill uses the Triton kernels"):
        assert flash4._fa4().kernels is None


def test_an_install_that_does_not_import_falls_back_to_triton_with_the_reason(fresh_fa4):
    """Issue 36: the CuTe DSL's wheels without their Python half (nvidia-cutlass-dsl-libs-core)
    made the first PPA prefill fail with a traceback."""
    def broken_import():
        raise ModuleNotFoundError("No module named 'cutlass.cute'")
    fresh_fa4.setattr(flash4.metadata, "version", lambda name: flash4.RELEASE)
    fresh_fa4.setattr(flash4, "_import_fa4", broken_import)
    with pytest.warns(UserWarning, match=r"does not import \(ModuleNotFoundError: No module named 'cutlass.cute'\)"):
        assert flash4._fa4().kernels is None


@pytest.mark.parametrize("capability, installed, imports, expected", [
    ((9, 0), None, True, r"^the Triton kernels \(flash-attn-4 is not installed \(pip install 'ppa-eval\[flash4\]' adds it\)\)$"),
    ((9, 0), "4.0.0b36", False, r"^the Triton kernels \(flash-attn-4 4.0.0b36 is installed but does not import "
                                r"\(ImportError: no cutlass\); reinstall with pip install 'ppa-eval\[flash4\]'\)$"),
    ((9, 0), "4.0.0b36", True, r"^FlashAttention-4 4.0.0b36 on NVIDIA H100 80GB HBM3 for whole sequences"),
    ((8, 0), "4.0.0b36", True, r"^the Triton kernels \(FlashAttention-4 runs on SM90 GPUs, H100 and H200; "
                               r"NVIDIA H100 80GB HBM3 is SM80\)$"),
])
def test_the_prefill_path_is_reported_with_its_reason(fresh_fa4, capability, installed, imports, expected):
    def import_fa4():
        if not imports:
            raise ImportError("no cutlass")
        return ("forward", "lists", "mask_mod")
    fresh_fa4.setattr(flash4.metadata, "version", not_installed if installed is None else lambda name: installed)
    fresh_fa4.setattr(flash4, "_import_fa4", import_fa4)
    fresh_fa4.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    fresh_fa4.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning is the test above's
        assert re.search(expected, flash4.status("cuda"))
    assert flash4.status("cpu") == "the Triton kernels (FlashAttention-4 needs an SM90 GPU)"
