"""Tile sizes of the PPA kernels on this GPU: time each candidate at the shapes the targets name.

    PYTHONPATH=. python bench/kernel_tiles.py [--out results/bench]

Decode: batch 8, L = 131,072, p = 3/4, GPU time (CUDA graph replay). Prefill: the masked tiles
alone at p = 7/8 (32,768 x 1 and 2,048 x 8), the gather alone beyond the window at 32,768, p = 3/4
and at 2,048 x 8, p = 1/2. Each
candidate's output is compared with the default tiles' output (which bench/attention.py checks
against the float64 reference); a candidate that disagrees is reported, not timed. Writes
kernel_tiles.json and kernel_tiles.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from attention import graph_ms, timed_ms  # bench/attention.py: the same timers

from ppa_eval.kernels import decode, prefill
from ppa_eval.kernels.reference import relative_error
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.patterns import PowerPattern

Q_HEADS, KV_HEADS, HEAD_DIM, WINDOW = 40, 8, 128, 64

DECODE_TILES = [decode.Tiles()] + [
    decode.Tiles(block_n=n, programs_per_sm=s, num_warps=w, num_stages=st)
    for n, s, w, st in [(32, 4, 4, 3), (64, 2, 4, 3), (64, 4, 4, 4), (32, 8, 4, 4), (128, 2, 8, 3), (64, 3, 4, 3)]
]
TILE_SHAPES = [prefill.TileShape()] + [
    prefill.TileShape(block_m=m, block_n=n, num_warps=w, num_stages=s)
    for m, n, w, s in [(128, 64, 8, 3), (128, 64, 8, 2), (128, 64, 8, 4), (128, 64, 4, 3), (64, 32, 4, 3),
                       (128, 32, 4, 3), (256, 64, 8, 2)]  # block_n: one 32- or 64-bit word of mask bits
]
GATHER_SHAPES = [prefill.Gather()] + [
    prefill.Gather(block_q=q, block_c=c, num_warps=w, num_stages=s)
    for q, c, w, s in [(4, 16, 4, 3), (4, 32, 4, 2), (4, 32, 4, 1), (4, 16, 4, 2), (4, 16, 4, 1), (2, 32, 4, 3),
                       (8, 16, 8, 3), (8, 16, 8, 1), (8, 32, 8, 2), (16, 16, 8, 1), (2, 16, 4, 1)]
]


def randn(*shape):
    return torch.randn(*shape, device="cuda", dtype=torch.bfloat16)


def sweep(name, candidates, run, timer):
    rows, expected = [], None
    for tiles in candidates:
        try:
            out = run(tiles)
            if expected is None:
                expected = out.clone()
            error = relative_error(out, expected.double())
            ms = timer(lambda: run(tiles)) if error <= 1e-2 else None
        except Exception as exc:  # a candidate that does not compile or fit is a result too
            error, ms = None, None
            print(f"  {tiles}: {type(exc).__name__}: {str(exc)[:200]}")
        rows.append({"case": name, "tiles": repr(tiles), "ms": ms, "vs_default": error})
        print(f"  {name} {tiles} ms={ms} diff={error}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    rows = []

    length, batch = 131072, 8
    pattern = PowerPattern("3/4", WINDOW)
    q = randn(batch, Q_HEADS, 1, HEAD_DIM)
    k, v = randn(batch, KV_HEADS, length, HEAD_DIM), randn(batch, KV_HEADS, length, HEAD_DIM)
    tables, out = offset_tables(pattern, length, "cuda"), torch.empty_like(q)
    rows += sweep(f"decode L={length} B={batch} p=3/4", DECODE_TILES, lambda t: decode.decode(
        q, k, v, out, tables, HEAD_DIM**-0.5, max_reach=length - 1, kv_len=length, tiles=t), graph_ms)
    del q, k, v

    # Masked tiles alone (split = L: every distance a tile), where they carry the whole prefill (p = 7/8);
    # then the gather alone beyond the window (split = w): at p = 3/4 and 32k, where it runs long
    # walks, and at p = 1/2 and 8 x 2k, the evaluation's shape, where each program walks a few steps.
    for length, batch in ((32768, 1), (2048, 8)):
        q = randn(batch, Q_HEADS, length, HEAD_DIM)
        k, v = randn(batch, KV_HEADS, length, HEAD_DIM), randn(batch, KV_HEADS, length, HEAD_DIM)
        out = torch.empty_like(q)
        tables = offset_tables(PowerPattern("7/8", WINDOW), length, "cuda")
        rows += sweep(f"prefill tiles L={length} B={batch} p=7/8", TILE_SHAPES, lambda t: prefill.prefill(
            q, k, v, out, tables, HEAD_DIM**-0.5, split=length, tiles=t), timed_ms)
        power = "3/4" if length == 32768 else "1/2"
        tables = offset_tables(PowerPattern(power, WINDOW), length, "cuda")
        rows += sweep(f"prefill gather L={length} B={batch} p={power}", GATHER_SHAPES, lambda t: prefill.prefill(
            q, k, v, out, tables, HEAD_DIM**-0.5, split=WINDOW, gather=t), timed_ms)
        del q, k, v, out

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernel_tiles.json").write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "rows": rows}, indent=1))
    lines = ["| case | tiles | ms | rel. diff to default |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['tiles']} | {r['ms'] if r['ms'] is None else round(r['ms'], 4)} | {r['vs_default']} |" for r in rows]
    (args.out / "kernel_tiles.md").write_text(f"# PPA kernel tiles on {torch.cuda.get_device_name()}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
