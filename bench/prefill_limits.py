"""What limits PPA prefill at p = 3/4, L = 32,768 (the one kernel target still missed): the far
part, where each (query, attended distance d >= w) pair brings its own key and value rows.

Three ways to tile that work, all exact, timed on the far distances only (the window band is
another 1-2 ms):
  - "4 queries"  : the prefill kernel's tiling (4 consecutive queries x 16 distances per step);
  - "1 query"    : the decode kernel run over every query (2D dots over 64 gathered rows);
  - "16 spaced"  : 4 groups of 4 consecutive queries, the groups `spacing` slots apart. Where the
                   attended distances are about `spacing` apart (d ~ 4,000-9,000 at p = 3/4 has
                   gaps of 11-13), query t at d_i and query t + spacing at d_i+1 read the same key
                   row, so a step's 256 row loads hit only ~100 distinct rows: the L1 cache can
                   serve the rest (ncu: 59% L1 hits against 4%).

Reported per case: time, ns per (query, distance) pair over all 8 KV heads, and the bytes those
pairs name (512 per pair and KV head) over the time. All three land at 0.53-0.76 ns per pair,
5.4-7.7 TB/s of gathered 256-byte rows: with 44.9 M far pairs that is 24-32 ms, above dense
SDPA's 17.4 ms. Nsight Compute (`ncu --section SpeedOfLight --section MemoryWorkloadAnalysis
--section Occupancy`, one H100, 2026-11-23) on the "4 queries, no software pipelining" and "16
spaced, 12 apart" kernels over d in [4000, 9000) says why:

    tiling       L2 throughput  L1/TEX throughput  L1 hit rate  occupancy  time
    4 queries         80%             90%               5%         25%     6.4 ms
    16 spaced         29%             74%              59%         12%     7.5 ms

The spaced tiling takes most rows from L1 instead of L2, but every gathered byte still passes the
L1/TEX pipe, and again through shared memory on its way to the tensor cores, and its larger tile
halves the occupancy. Going below dense needs key rows staged once in shared memory and gathered
from there for many queries (ldmatrix with per-row addresses). Triton 3.6 (torch 2.11's, the GPU
machine's) cannot express that, not even in its experimental Gluon dialect; Gluon in Triton 3.9
has a shared-memory gather (`shared_memory_descriptor.gather`), untried here.

    PYTHONPATH=. python bench/prefill_limits.py [--out results/bench]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import triton
import triton.language as tl

from ppa_eval.kernels import decode
from ppa_eval.kernels.online_softmax import normalized, online_softmax_step
from ppa_eval.kernels.reference import relative_error
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.patterns import PowerPattern

L, Q_HEADS, KV_HEADS, HEAD_DIM, WINDOW, POWER = 32768, 40, 8, 128, 64, "3/4"
GROUP = Q_HEADS // KV_HEADS
ZONES = {"all far distances": None, "d in [4000, 9000)": (4000, 9000)}


@triton.jit
def _far_kernel(Q, K, V, Out, FarDist, Counts, n_queries, spacing, zone_lo, zone_hi, window, qk_scale,
                GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, N_KV: tl.constexpr,
                RUN: tl.constexpr, RUNS: tl.constexpr, BLOCK_C: tl.constexpr):
    # Queries of one program: RUNS runs of RUN consecutive queries, `spacing` slots apart (RUN divides
    # spacing). Layouts are contiguous [L, heads, HEAD_DIM]; one sequence; far distances only.
    pid = tl.program_id(0)
    kv_head = tl.program_id(1)
    per_block = spacing // RUN
    idx = tl.arange(0, RUN * RUNS)
    t = (pid // per_block) * spacing * RUNS + (pid % per_block) * RUN + idx % RUN + spacing * (idx // RUN)
    t_ok = t < n_queries
    reach = tl.where(t_ok, t, -1)
    g = tl.arange(0, BLOCK_G)
    dim = tl.arange(0, HEAD_DIM)
    head = kv_head * GROUP + g
    q_t = tl.load(Q + t[:, None, None] * (N_KV * GROUP * HEAD_DIM) + head[None, None, :] * HEAD_DIM + dim[None, :, None],
                  mask=t_ok[:, None, None] & (g < GROUP)[None, None, :], other=0.0)
    m = tl.full([RUN * RUNS, BLOCK_G], float("-inf"), tl.float32)
    l = tl.zeros([RUN * RUNS, BLOCK_G], tl.float32)
    acc = tl.zeros([RUN * RUNS, HEAD_DIM, BLOCK_G], tl.float32)
    max_reach = tl.max(reach, 0)
    n_far = tl.where(max_reach >= window, tl.load(Counts + tl.maximum(max_reach, 0)) - window, 0)
    hi = tl.minimum(n_far, zone_hi)
    for c0 in range(zone_lo, hi, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        d = tl.load(FarDist + c, mask=c < hi, other=0)
        ok = (d[None, :] <= reach[:, None]) & (c < hi)[None, :]
        row = (t[:, None] - d[None, :]).to(tl.int64)[:, :, None] * (N_KV * HEAD_DIM) + kv_head * HEAD_DIM + dim[None, None, :]
        k = tl.load(K + row, mask=ok[:, :, None], other=0.0)
        s = tl.where(ok[:, :, None], tl.dot(k, q_t) * qk_scale, float("-inf"))
        p, alpha, m, l = online_softmax_step(s, m, l, 1)
        v = tl.load(V + row, mask=ok[:, :, None], other=0.0)
        acc = acc * alpha[:, None, :] + tl.dot(tl.permute(v, [0, 2, 1]), p.to(v.dtype))
    tl.store(Out + t[:, None, None] * (N_KV * GROUP * HEAD_DIM) + head[None, None, :] * HEAD_DIM + dim[None, :, None],
             normalized(acc, l, 1).to(Out.dtype.element_ty), mask=t_ok[:, None, None] & (g < GROUP)[None, None, :])


def far_attention(q, k, v, out, far, counts, zone, run, runs, spacing, warps, stages):
    """q, out [L, Hq, D]; k, v [L, Hkv, D]; attends far distances far[zone[0]:zone[1]] only."""
    spacing = spacing if runs > 1 else run
    grid = (triton.cdiv(L, spacing * runs) * (spacing // run), KV_HEADS)
    _far_kernel[grid](q, k, v, out, far, counts, L, spacing, zone[0], zone[1], WINDOW, HEAD_DIM**-0.5 * 1.4426950408889634,
                      GROUP=GROUP, BLOCK_G=8, HEAD_DIM=HEAD_DIM, N_KV=KV_HEADS, RUN=run, RUNS=runs, BLOCK_C=16,
                      num_warps=warps, num_stages=stages)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    torch.manual_seed(0)
    q = torch.randn(L, Q_HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(L, KV_HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    tables = offset_tables(PowerPattern(POWER, WINDOW), L, "cuda")
    far = tables.distances[WINDOW:]
    far_host = far.cpu().numpy()
    rows = []
    for zone_name, bounds in ZONES.items():
        inside = np.flatnonzero((far_host >= bounds[0]) & (far_host < bounds[1])) if bounds else np.arange(len(far_host))
        zone = (int(inside[0]), int(inside[-1]) + 1)
        pairs = float(np.clip(L - far_host[zone[0]:zone[1]], 0, None).sum())  # (query, distance) pairs
        cases = [("4 queries (prefill kernel's tiling)", dict(run=4, runs=1, spacing=4, warps=4, stages=3)),
                 ("4 queries, no software pipelining", dict(run=4, runs=1, spacing=4, warps=4, stages=1)),
                 ("16 consecutive queries", dict(run=16, runs=1, spacing=16, warps=8, stages=1))]
        cases += [(f"16 spaced: 4 runs of 4, {s} apart", dict(run=4, runs=4, spacing=s, warps=8, stages=1)) for s in (12, 16)]
        expected = None
        for name, tiling in cases:
            out = torch.full_like(q, float("nan"))
            run = lambda: far_attention(q, k, v, out, far, tables.counts, zone, **tiling)  # noqa: E731
            run()
            expected = out.clone() if expected is None else expected
            rows.append(dict(zone=zone_name, tiling=name, **tiling, pairs=pairs, difference=relative_error(out[WINDOW:], expected[WINDOW:].double()),
                             ms=triton.testing.do_bench(run, warmup=50, rep=300, return_mode="median")))
        if bounds is None:  # the decode kernel over every query, window band included
            out = torch.full((1, Q_HEADS, L, HEAD_DIM), float("nan"), device="cuda", dtype=torch.bfloat16)
            qd, kd, vd = q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None]
            run = lambda: decode.decode(qd, kd, vd, out, tables, HEAD_DIM**-0.5, max_reach=L - 1, kv_len=L)  # noqa: E731
            rows.append(dict(zone="all distances (window too)", tiling="1 query (decode kernel over all queries)",
                             pairs=float(sum(int(tables.host_counts[t]) for t in range(L))), difference=None,
                             ms=triton.testing.do_bench(run, warmup=50, rep=300, return_mode="median")))
    for r in rows:
        r["ns_per_pair"] = r["ms"] * 1e6 / r["pairs"]
        r["TB_per_s"] = r["pairs"] * KV_HEADS * 2 * HEAD_DIM * 2 / (r["ms"] * 1e-3) / 1e12
    lines = [f"# PPA prefill far part, L = {L}, p = {POWER}, w = {WINDOW} ({torch.cuda.get_device_name()})", "",
             "| distances | tiling | ms | ns per pair | gathered TB/s | diff to first tiling |", "|---|---|---|---|---|---|"]
    for r in rows:
        difference = "" if r["difference"] is None else f"{r['difference']:.1e}"
        lines.append(f"| {r['zone']} | {r['tiling']} | {r['ms']:.2f} | {r['ns_per_pair']:.3f} | {r['TB_per_s']:.2f} | {difference} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prefill_limits.json").write_text(json.dumps(rows, indent=1))
    (args.out / "prefill_limits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
