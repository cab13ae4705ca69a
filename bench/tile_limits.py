"""How fast can masked dense tiles run on this GPU, next to cuDNN's dense causal attention?

At p >= 3/4 and up to 32k tokens every 64 x 64 tile of the causal square holds attended pairs, so
PPA prefill as masked tiles does dense attention's whole work plus the mask. This measures what
that work costs in the kernels at hand (bf16, 40 query / 8 KV heads, head 128, w = 64), each
output compared with the production kernel's (maxdiff):

  --triton      the production prefill (all tiles, and the cost model's split), then variants of
                the tile walk in Triton: pointer or TMA-descriptor loads, tile shapes, the PPA
                mask bits or only the causal mask (the walk's own ceiling), masked or unmasked
                loads (`loadmask`: the row and key bounds also and-ed into every tile's mask),
                softmax with -inf or a finite -1e30 for masked scores, longest programs first;
  --addressing  the 64 x 64 pointer walk with a masked q load, the cache's runtime strides and a
                runtime loop start, each on or off (what the production kernel's generality costs);
  --cudnn-bias  cuDNN's fused attention through cudnn-frontend's Python graph (the package
                nvidia-cudnn-frontend, not a dependency of ppa-eval) with the PPA mask as an
                additive bias [1, 1, L, L] of 0 / -inf, with and without its causal mask.

Found on one NVIDIA H200 (2026-12-01/02, torch 2.11+cu130, Triton 3.6, cuDNN 9.19,
cudnn-frontend 1.32; the raw output of those runs is results/bench/tile_limits_h200.txt, a run
writes OUT/tile_limits_<mode>.txt):
  - masked or unmasked loads decide most: production's masked walk 1.69-1.80x dense, the same walk
    with unmasked loads 1.47-1.57x (the production kernel then dropped its load masks: 1.58-1.67x
    in bench/attention.py; the rest of the gap is its generality: a masked q load, runtime cache
    strides and loop start, 3-7% each in --addressing, within run-to-run noise of a few %);
  - the causal-only walk with TMA loads, unmasked, best tile shape per length (64 x 64 x 4 warps
    at 2k, 128 x 64 x 8 warps at 8k and 32k): 1.30x / 1.26x / 1.27x, Triton's ceiling for this
    work; with the PPA bits TMA gains nothing (1.6x and worse); Triton's warp specialization
    (`tl.range(..., warp_specialize=True)`) fails to compile on Hopper;
  - cuDNN with the PPA bias and its causal mask: 1.75-1.87x dense; without the causal mask 3.1-3.6x.

    PYTHONPATH=. python bench/tile_limits.py --triton [LxB ...] [--out results/bench]
"""
import argparse
import itertools
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.tools.tensor_descriptor import TensorDescriptor

from ppa_eval.kernels.online_softmax import online_softmax_step
from ppa_eval.kernels.prefill import prefill
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.kernels.tiles import row_bits
from ppa_eval.patterns import PowerPattern

LINES: list[str] = []


def emit(*parts):
    """print, and keep the line for the results file."""
    line = " ".join(str(p) for p in parts)
    LINES.append(line)
    print(line)


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=200)


NEG: tl.constexpr = tl.constexpr(-1.0e30)


@triton.jit
def _rows(X, desc, kv_row0, k0, key, key_ok, b, kv_head, L, stride_b, stride_l,
          HEAD_DIM: tl.constexpr, TMA: tl.constexpr, LOADMASK: tl.constexpr, RSTRIDE: tl.constexpr):
    """The K or V rows `key` of a contiguous cache [B, Hkv, L, HEAD_DIM], loaded as _tiles_x's
    switches say (row kv_row0 + key of the cache seen as [B * Hkv * L, HEAD_DIM])."""
    dim = tl.arange(0, HEAD_DIM)
    if TMA:
        rows = desc.load([kv_row0 + k0, 0])
    elif LOADMASK:
        rows = tl.load(X + (kv_row0 + key).to(tl.int64)[:, None] * HEAD_DIM + dim[None, :], mask=key_ok[:, None],
                       other=0.0)
    elif RSTRIDE:
        head_base = X + kv_head * L * HEAD_DIM
        rows = tl.load(head_base + (b.to(tl.int64) * stride_b + key.to(tl.int64) * stride_l)[:, None] + dim[None, :])
    else:
        rows = tl.load(X + (kv_row0 + key).to(tl.int64)[:, None] * HEAD_DIM + dim[None, :])
    return rows


@triton.jit
def _tiles_x(Q, Out, K, V, desc_k, desc_v, RowBits, desc_bits, L, n_q_heads, n_kv_heads, qk_scale, n_row_bits,
             GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             MASK: tl.constexpr, TMA: tl.constexpr, REVERSE: tl.constexpr, SOFTMAX: tl.constexpr,
             LOADMASK: tl.constexpr, BITS_TMA: tl.constexpr, lo=0, stride_kb=0, stride_kl=0,
             QMASK: tl.constexpr = 0, RSTRIDE: tl.constexpr = 0, RLO: tl.constexpr = 0):
    """The masked-tile walk of tiles.py reduced to a contiguous cache whose length is a multiple of
    the tiles, all tiles (no gather), with switches for what is compared (module docstring):
    MASK 0 = PPA bits, 1 = causal only; TMA: K/V (and with BITS_TMA the bits) through tensor
    descriptors; SOFTMAX 0 = online_softmax_step with -inf, 1 = finite NEG; LOADMASK, QMASK:
    bounds on the loads; RSTRIDE, RLO: runtime strides and loop start as the production kernel has."""
    pid_m = tl.program_id(0)
    if REVERSE:
        pid_m = tl.num_programs(0) - 1 - pid_m
    b = tl.program_id(1) // n_q_heads
    head = tl.program_id(1) % n_q_heads
    t = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    t_ok = t < L
    dim = tl.arange(0, HEAD_DIM)
    q_base = (b * n_q_heads + head).to(tl.int64) * L * HEAD_DIM
    if LOADMASK or QMASK:
        q = tl.load(Q + q_base + t[:, None] * HEAD_DIM + dim[None, :], mask=t_ok[:, None], other=0.0)
    else:
        q = tl.load(Q + q_base + t[:, None] * HEAD_DIM + dim[None, :])
    kv_row0 = (b * n_kv_heads + head // GROUP) * L
    if SOFTMAX:
        m_i = tl.full([BLOCK_M], NEG, tl.float32)
    else:
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    j = tl.arange(0, BLOCK_N)
    hi = tl.minimum(pid_m * BLOCK_M + BLOCK_M, L)
    last = hi - 1
    start_k = 0
    if RLO:
        start_k = lo
    for k0 in tl.range(start_k, hi, BLOCK_N):
        if not RLO:
            k0 = tl.multiple_of(k0, BLOCK_N)
        key = k0 + j
        key_ok = key <= last
        k = _rows(K, desc_k, kv_row0, k0, key, key_ok, b, head // GROUP, L, stride_kb, stride_kl,
                  HEAD_DIM, TMA, LOADMASK, RSTRIDE)
        qk = tl.dot(q, k.T)
        if MASK == 0:
            if BITS_TMA:
                w1 = desc_bits.load([pid_m * BLOCK_M - k0 + 64])[:, None]  # table shifted by one: aligned
                if BLOCK_N == 64:
                    w = w1
                else:
                    w2 = desc_bits.load([pid_m * BLOCK_M - k0])[:, None]
                    w = tl.where(j[None, :] < 64, w1, w2)
            else:
                e = tl.minimum(tl.maximum(t - k0 + 63, 0), n_row_bits - 1)
                if BLOCK_N == 64:
                    w = tl.load(RowBits + e)[:, None]
                else:
                    w1 = tl.load(RowBits + e)[:, None]
                    w2 = tl.load(RowBits + tl.maximum(e - 64, 0))[:, None]
                    w = tl.where(j[None, :] < 64, w1, w2)
            allowed = ((w >> (j[None, :] & 63).to(tl.int64)) & 1) != 0
        else:
            allowed = key[None, :] <= t[:, None]
        if LOADMASK:
            allowed = allowed & key_ok[None, :] & t_ok[:, None]
        if SOFTMAX:
            qk = tl.where(allowed, qk * qk_scale, NEG)
            m_ij = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.math.exp2(qk - m_ij[:, None])
            alpha = tl.math.exp2(m_i - m_ij)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None]
        else:
            s = tl.where(allowed, qk * qk_scale, float("-inf"))
            p, alpha, m_ij, l_i = online_softmax_step(s, m_i, l_i, 1)
            acc = acc * alpha[:, None]
        v = _rows(V, desc_v, kv_row0, k0, key, key_ok, b, head // GROUP, L, stride_kb, stride_kl,
                  HEAD_DIM, TMA, LOADMASK, RSTRIDE)
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_ij
    acc = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    tl.store(Out + q_base + t[:, None] * HEAD_DIM + dim[None, :], acc.to(Out.dtype.element_ty), mask=t_ok[:, None])


def triton_walks(cases, quick):
    torch.manual_seed(0)
    hq, hkv, d = 40, 8, 128
    scale = d ** -0.5
    emit(torch.cuda.get_device_name(), torch.__version__, triton.__version__, time.strftime("%Y-%m-%d"))
    for L, B in cases:
        q = torch.randn(B, hq, L, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, hkv, L, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(B, hkv, L, d, device="cuda", dtype=torch.bfloat16)
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            dense = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
            dense_out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        emit(f"\nL={L} B={B}: cuDNN/default SDPA causal {dense:.3f} ms")
        for power in ("3/4", "7/8"):
            tables = offset_tables(PowerPattern(power, 64), L, "cuda")
            out = torch.empty_like(q)
            prod = bench(lambda: prefill(q, k, v, out, tables, scale, split=L))
            prod_auto = bench(lambda: prefill(q, k, v, out, tables, scale))
            prefill(q, k, v, out, tables, scale, split=L)
            ref = out.clone()
            emit(f"  p={power} production all-tiles {prod:.3f} ms ({prod / dense:.2f}x), auto split "
                 f"{prod_auto:.3f} ms ({prod_auto / dense:.2f}x)")
            bits = row_bits(tables, L, 64)
            bits_shifted = torch.cat([bits.new_zeros(1), bits])
            k2 = k.view(-1, d)
            v2 = v.view(-1, d)
            variants = []
            # ablations of the pointer-load 64 x 64 kernel (production's shape)
            flag_sets = [(qm, rs, rl) for qm in (0, 1) for rs in (0, 1) for rl in (0, 1)] if quick else [(0, 0, 0)]
            for rev in ((0,) if quick else (0, 1)):
                for sm in ((0,) if quick else (0, 1)):
                    for lm in ((0,) if quick else (0, 1)):
                        variants.append((64, 64, 4, 3, 0, 0, rev, sm, lm, 0))
            # TMA with the mask bits through a descriptor too
            for (bm, bn, warps, stages) in ([] if quick else [(64, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 2),
                                                              (64, 128, 4, 3), (128, 64, 8, 4), (128, 64, 8, 2)]):
                for bt in (1, 0):
                    variants.append((bm, bn, warps, stages, 1, 0, 1, 1, 1, bt))
                if power == "7/8":
                    variants.append((bm, bn, warps, stages, 1, 1, 1, 1, 1, 0))
                    variants.append((bm, bn, warps, stages, 1, 1, 1, 1, 0, 0))  # the walk's ceiling
            for variant, flags in itertools.product(variants, flag_sets):
                (bm, bn, warps, stages, tma, mask, rev, sm, lm, bt), (qm, rs, rl) = variant, flags
                dk = TensorDescriptor.from_tensor(k2, [bn, d])
                dv = TensorDescriptor.from_tensor(v2, [bn, d])
                db = TensorDescriptor.from_tensor(bits_shifted, [bm])
                o = torch.empty_like(q)
                grid = (L // bm, B * hq)
                name = (f"{bm}x{bn} w{warps} s{stages} tma={tma} mask={'bits' if mask == 0 else 'causal'} "
                        f"rev={rev} softmax={'finite' if sm else 'prod'} loadmask={lm} bits_tma={bt} "
                        f"qmask={qm} rstride={rs} rlo={rl}")

                def run():
                    _tiles_x[grid](q, o, k2, v2, dk, dv, bits, db, L, hq, hkv, scale * 1.4426950408889634,
                                   bits.shape[0], GROUP=hq // hkv, HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn,
                                   MASK=mask, TMA=tma, REVERSE=rev, SOFTMAX=sm, LOADMASK=lm, BITS_TMA=bt,
                                   lo=0, stride_kb=k.stride(0), stride_kl=k.stride(2), QMASK=qm, RSTRIDE=rs, RLO=rl,
                                   num_warps=warps, num_stages=stages)
                try:
                    run()
                    torch.cuda.synchronize()
                    ms = bench(run)
                except Exception as exc:  # noqa
                    msg = str(exc).splitlines()[-1][:160] if str(exc) else ""
                    emit(f"    {name}: FAILED {type(exc).__name__}: {msg}")
                    continue
                cmp = ref if mask == 0 else dense_out
                err = (o.float() - cmp.float()).abs().max().item()
                emit(f"    {name}: {ms:.3f} ms ({ms / dense:.2f}x dense) maxdiff {err:.1e}")


def ppa_bias(pattern, L, neg):
    attended = torch.as_tensor(pattern.distance_table(L)[:L], device="cuda")
    idx = torch.arange(L, device="cuda")
    d = idx[:, None] - idx[None, :]
    allowed = (d >= 0) & attended[d.clamp(min=0)]
    bias = torch.full((L, L), neg, device="cuda", dtype=torch.bfloat16)
    bias[allowed] = 0
    return bias.view(1, 1, L, L)


def cudnn_graph(q, k, v, bias, scale, causal, handle):
    import cudnn

    graph = cudnn.pygraph(io_data_type=cudnn.data_type.BFLOAT16, intermediate_data_type=cudnn.data_type.FLOAT,
                          compute_data_type=cudnn.data_type.FLOAT, handle=handle)
    tq, tk, tv = graph.tensor_like(q), graph.tensor_like(k), graph.tensor_like(v)
    kwargs = dict(name="sdpa", q=tq, k=tk, v=tv, attn_scale=scale, use_causal_mask=causal)
    tb = None
    if bias is not None:
        tb = graph.tensor_like(bias)
        kwargs["bias"] = tb
    try:
        o, _ = graph.sdpa(is_inference=True, **kwargs)
    except TypeError:
        o, _ = graph.sdpa(generate_stats=False, **kwargs)
    o.set_output(True).set_dim(list(q.shape)).set_stride(list(q.stride()))
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    graph.check_support()
    graph.build_plans()
    ws = torch.empty(graph.get_workspace_size(), device="cuda", dtype=torch.uint8)
    out = torch.empty_like(q)
    pack = {tq: q, tk: k, tv: v, o: out}
    if tb is not None:
        pack[tb] = bias

    def run():
        graph.execute(pack, ws, handle=handle)
        return out
    return run


def cudnn_bias(cases):
    import cudnn  # nvidia-cudnn-frontend: not a dependency of ppa-eval, install it to run this part

    torch.manual_seed(0)
    hq, hkv, d = 40, 8, 128
    scale = d ** -0.5
    handle = cudnn.create_handle()
    emit(torch.cuda.get_device_name(), torch.__version__, "cudnn backend", cudnn.backend_version(),
         "frontend", getattr(cudnn, "__version__", "?"), time.strftime("%Y-%m-%d"))
    for L, B in cases:
        q = torch.randn(B, hq, L, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, hkv, L, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(B, hkv, L, d, device="cuda", dtype=torch.bfloat16)
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            dense = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
        emit(f"\nL={L} B={B}: torch SDPA cuDNN causal {dense:.3f} ms")
        try:
            run = cudnn_graph(q, k, v, None, scale, True, handle)
            run()
            ms = bench(run)
            emit(f"  frontend causal, no bias: {ms:.3f} ms ({ms / dense:.2f}x)")
        except Exception:
            emit(traceback.format_exc(limit=2))
        for power in ("3/4", "7/8"):
            pattern = PowerPattern(power, 64)
            tables = offset_tables(pattern, L, "cuda")
            ref = torch.empty_like(q)
            prefill(q, k, v, ref, tables, scale)
            prod = bench(lambda: prefill(q, k, v, ref, tables, scale))
            emit(f"  p={power}: production kernel {prod:.3f} ms ({prod / dense:.2f}x)")
            for neg in (float("-inf"), -1.0e9):
                bias = ppa_bias(pattern, L, neg)
                for causal in (True, False):
                    try:
                        run = cudnn_graph(q, k, v, bias, scale, causal, handle)
                        out = run()
                        torch.cuda.synchronize()
                        ms = bench(run)
                        err = (out.float() - ref.float()).abs().max().item()
                        emit(f"    frontend bias neg={neg:g} causal={causal}: {ms:.3f} ms ({ms / dense:.2f}x) "
                             f"maxdiff vs kernel {err:.1e} nan={bool(out.isnan().any())}")
                    except Exception as exc:
                        emit(f"    frontend bias neg={neg:g} causal={causal}: FAILED {type(exc).__name__}: "
                             f"{str(exc)[:300]}")
            try:
                mask = ppa_bias(pattern, L, float("-inf"))
                with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
                    ms = bench(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True))
                err = (out.float() - ref.float()).abs().max().item()
                emit(f"    torch SDPA cuDNN attn_mask (full square): {ms:.3f} ms ({ms / dense:.2f}x) maxdiff {err:.1e}")
            except Exception as exc:
                emit(f"    torch SDPA cuDNN attn_mask: FAILED {type(exc).__name__}: {str(exc)[:200]}")
            del bias
            torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    for name in ("triton", "addressing", "cudnn-bias"):
        mode.add_argument(f"--{name}", dest="mode", action="store_const", const=name)
    parser.add_argument("cases", nargs="*", default=["2048x8", "8192x2", "32768x1"], help="LxB")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args()
    cases = [tuple(int(x) for x in c.split("x")) for c in args.cases]
    if args.mode == "cudnn-bias":
        cudnn_bias(cases)
    else:
        triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
        triton_walks(cases, quick=args.mode == "addressing")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"tile_limits_{args.mode}.txt").write_text("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
