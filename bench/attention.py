"""PPA attention on one GPU at Nano-9B-v2's attention shape: the Triton kernels against flex
attention with the PPA mask (the transformers engine's "ppa_flex" path), dense SDPA and a sliding
window alone, for decode and prefill; then generation end to end through transformers' generate()
and through the engine's own CUDA-graph decoding (ppa_eval/engines/hf_graph.py). Where
flash-attn-4 is installed, whole-sequence prefill may run on FlashAttention-4 (the row says so) and
its plain causal kernel gets a row of its own.

Every timed PPA output is first checked against a float64 dense masked reference built from the
pattern's definition (fresh random bf16 inputs, output NaN-poisoned before the run). Floors: decode
is bandwidth-bound (attended K/V bytes over the measured copy bandwidth); prefill is the larger of
attended-pair FLOPs over the measured bf16 matmul rate and its input/output bytes over bandwidth.

    PYTHONPATH=. python bench/attention.py [--out results/bench] [--sections decode,prefill,engine,e2e] [--label h100]

Writes attention[_LABEL].json and .md to --out and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

from markdown_tables import section_tables
from ppa_eval.engines import hf_attention, hf_graph
from ppa_eval.kernels import flash4, ppa_attention, ppa_attention_paged, prefill
from ppa_eval.kernels.attention import flash4_lists
from ppa_eval.kernels.tables import offset_tables
from ppa_eval.kernels.reference import attended_distances, masked_attention, relative_error
from ppa_eval.patterns import PowerPattern, keys_per_query, sliding_window

Q_HEADS, KV_HEADS, HEAD_DIM = 40, 8, 128       # Nano-9B-v2's attention layers
WINDOW = 64
POWERS = ["1/2", "3/4", "7/8"]
DECODE_BATCH, DECODE_LENGTHS = 8, [2048, 8192, 32768, 131072]
PREFILL_SHAPES = [(2048, 8), (8192, 2), (32768, 1)]  # (L, batch) as in the NOTES' measurements
PAGE = 16
TOLERANCE = 1e-2
ENGINE_LENGTHS = (2048, 8192)
# generation end to end: a random-weight Llama whose attention layers have the shape above
E2E = dict(batch=8, prompt=16384, new_tokens=256, layers=4, hidden=5120, intermediate=13824, vocab=32000)
DEVICE, DTYPE = "cuda", torch.bfloat16
SDPA_BACKENDS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


# -- measuring ----------------------------------------------------------------------------------

def timed_ms(fn) -> float:
    fn()
    torch.cuda.synchronize()
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def host_us(fn, calls=500) -> float:
    """Host time per call of a loop that never waits for the GPU (launch costs, when the GPU keeps up)."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    seconds = time.perf_counter() - start
    torch.cuda.synchronize()
    return seconds / calls * 1e6


def graph_ms(fn) -> float:
    """GPU time alone: `fn` captured in a CUDA graph and replayed, so Python launch costs drop out."""
    return timed_ms(hf_graph.run_then_capture(fn).replay)


def device_ceilings() -> dict:
    """The copy bandwidth (bytes read + written) and the bf16 matmul rate, measured here."""
    src = torch.empty(2 << 30, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    copy_ms = timed_ms(lambda: dst.copy_(src))
    a = torch.randn(8192, 8192, device=DEVICE, dtype=torch.bfloat16)
    mm_ms = timed_ms(lambda: a @ a)
    del src, dst
    return {"gpu": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "bandwidth_GBps": 2 * (2 << 30) / copy_ms / 1e6, "matmul_TFLOPs": 2 * 8192**3 / mm_ms / 1e9,
            "prefill_path": flash4.status(DEVICE)}


def randn(*shape):
    return torch.randn(*shape, device=DEVICE, dtype=DTYPE)


def poisoned(*shape):
    return torch.full(shape, float("nan"), device=DEVICE, dtype=DTYPE)


class Table:
    def __init__(self, ceilings):
        self.ceilings, self.rows, self.errors = ceilings, [], []

    def add(self, **row):
        self.rows.append(row)
        print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)


def attended_bytes(n_rows: int, batch: int) -> float:
    return batch * KV_HEADS * n_rows * HEAD_DIM * 2 * 2  # K and V, bf16


def decode_floor_ms(n_rows, ceilings):
    return attended_bytes(n_rows, DECODE_BATCH) / ceilings["bandwidth_GBps"] / 1e6


def prefill_floor_ms(pairs, length, batch, ceilings):
    flops = 4 * HEAD_DIM * Q_HEADS * pairs * batch
    io_bytes = batch * length * HEAD_DIM * 2 * (2 * Q_HEADS + 2 * KV_HEADS)
    return max(flops / ceilings["matmul_TFLOPs"] / 1e9, io_bytes / ceilings["bandwidth_GBps"] / 1e6)


# -- the engine's attention paths ---------------------------------------------------------------

def engine_attention(implementation, pattern, q, k, v):
    """A callable running transformers' registered `implementation` as an attention layer would
    (the mask is built once, as the engine does once per forward pass), and its [B, Hq, Lq, D] output."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, causal_mask_function
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = SimpleNamespace(ppa_power=str(pattern.power), ppa_window=pattern.window)
    n_queries, kv_len = q.shape[2], k.shape[2]
    mask = ALL_MASK_ATTENTION_FUNCTIONS[implementation](
        batch_size=q.shape[0], q_length=n_queries, kv_length=kv_len, q_offset=kv_len - n_queries, kv_offset=0,
        mask_function=causal_mask_function, attention_mask=None, config=config, device=q.device)
    module = torch.nn.Module().eval()
    module.num_key_value_groups = Q_HEADS // KV_HEADS  # as a Llama attention layer has it (GQA)
    attention = ALL_ATTENTION_FUNCTIONS[implementation]
    return lambda: attention(module, q, k, v, mask, scaling=HEAD_DIM**-0.5)[0].transpose(1, 2)


def dense_sdpa(q, k, v, causal, backend=None):
    """SDPA with GQA; backend=None is torch's own choice (cuDNN on an H100 with torch 2.11)."""
    def run():
        with sdpa_kernel(backend or SDPA_BACKENDS):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    return run


def flash_sdpa_row(table, base, fn_of, dense_ms, floor, graph):
    """The FlashAttention backend alone, next to the default dispatch (recorded as an error if it refuses)."""
    try:
        fn = fn_of(SDPBackend.FLASH_ATTENTION)
        ms = graph_ms(fn) if graph else timed_ms(fn)
        table.add(**base, p="1", impl="dense SDPA (FlashAttention backend)", ms=ms, vs_sdpa=ms / dense_ms,
                  floor_ms=floor, vs_floor=ms / floor, error=None)
    except RuntimeError as exc:
        table.errors.append(f"{base}: FlashAttention backend: {str(exc).splitlines()[0]}")


def flash4_causal_row(table, base, q, k, v, dense_ms, floor):
    """FlashAttention-4's causal kernel with no mask_mod, where it is installed: what flash4.py's
    masked prefill would cost without its mask."""
    try:
        from flash_attn.cute.interface import flash_attn_func
    except ImportError:
        return
    ms = timed_ms(lambda: flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True))
    table.add(**base, p="1", impl="dense FlashAttention-4 (causal)", ms=ms, vs_sdpa=ms / dense_ms, floor_ms=floor,
              vs_floor=ms / floor, error=None)


def reference(q, k, v, pattern, length):
    attended = attended_distances(pattern.power, pattern.window, length)
    return masked_attention(q, k, v, attended, sink=pattern.sink, scale=HEAD_DIM**-0.5)


def checked(name, out, ref) -> float:
    error = relative_error(out, ref)
    if not error <= TOLERANCE or out.isnan().any():
        raise AssertionError(f"{name}: relative error {error:.3g} (NaN outputs: {int(out.isnan().sum())})")
    return error


# -- sections -----------------------------------------------------------------------------------

def paged_copy(k, v):
    """k, v [B, Hkv, L, D] scattered over shuffled pages of a [blocks, PAGE, Hkv, D] cache."""
    batch, _, length, _ = k.shape
    pages = triton.cdiv(length, PAGE)
    block_table = torch.randperm(batch * pages, device=DEVICE).view(batch, pages).to(torch.int32)
    caches = []
    for x in (k, v):
        padded = F.pad(x, (0, 0, 0, pages * PAGE - length)).view(batch, KV_HEADS, pages, PAGE, HEAD_DIM)
        cache = torch.empty(batch * pages, PAGE, KV_HEADS, HEAD_DIM, device=DEVICE, dtype=x.dtype)
        cache[block_table.long()] = padded.permute(0, 2, 3, 1, 4)
        caches.append(cache)
    return caches, block_table, torch.full((batch,), length, device=DEVICE, dtype=torch.int32)


def decode_section(table: Table, flex: bool):
    ceilings = table.ceilings
    for length in DECODE_LENGTHS:
        q = randn(DECODE_BATCH, Q_HEADS, 1, HEAD_DIM)
        k, v = randn(DECODE_BATCH, KV_HEADS, length, HEAD_DIM), randn(DECODE_BATCH, KV_HEADS, length, HEAD_DIM)
        (k_cache, v_cache), block_table, seq_lens = paged_copy(k, v)
        # Decode is timed both ways: `ms` replays a CUDA graph (the GPU's time alone, as a serving
        # engine with graphs sees it); `eager_ms` includes Python's launch costs, as transformers sees it.
        dense = dense_sdpa(q, k, v, causal=False)
        dense_ms = graph_ms(dense)
        base = dict(section="decode", L=length, batch=DECODE_BATCH)
        floor = decode_floor_ms(length, ceilings)
        dense_eager_ms = timed_ms(dense)
        table.add(**base, p="1", impl="dense SDPA", ms=dense_ms, eager_ms=dense_eager_ms, vs_sdpa=1.0,
                  floor_ms=floor, vs_floor=dense_ms / floor, error=None)
        flash_sdpa_row(table, base, lambda backend: dense_sdpa(q, k, v, False, backend), dense_ms, floor, graph=True)
        window = dense_sdpa(q, k[:, :, -WINDOW:], v[:, :, -WINDOW:], causal=False)
        window_ms = graph_ms(window)
        floor = decode_floor_ms(WINDOW, ceilings)
        table.add(**base, p="0", impl=f"window only (SDPA, last {WINDOW} slots)", ms=window_ms,
                  eager_ms=timed_ms(window), vs_sdpa=window_ms / dense_ms, floor_ms=floor,
                  vs_floor=window_ms / floor, error=None)
        for power in ["0"] + POWERS:
            pattern = PowerPattern(power, WINDOW)
            rows = int(keys_per_query(pattern, length)[-1])
            floor = decode_floor_ms(rows, ceilings)
            ref = reference(q, k, v, pattern, length)
            contiguous = lambda: ppa_attention(q, k, v, pattern, out=out)  # noqa: E731
            paged = lambda: ppa_attention_paged(q, k_cache, v_cache, block_table, seq_lens, pattern,  # noqa: E731
                                                max_seq_len=length, out=out)
            for name, fn in (("ppa kernel", contiguous), ("ppa kernel, paged", paged)):
                out = poisoned(*q.shape)
                error = checked(f"{name} L={length} p={power}", fn(), ref)
                ms = graph_ms(fn)
                table.add(**base, p=power, impl=name, ms=ms, eager_ms=timed_ms(fn), vs_sdpa=ms / dense_ms,
                          floor_ms=floor, vs_floor=ms / floor, error=error)
            if flex and power != "0":
                fn = engine_attention("ppa_flex", pattern, q, k, v)
                error = relative_error(fn(), ref)
                ms = timed_ms(fn)
                table.add(**base, p=power, impl="flex PPA (engine)", eager_ms=ms, vs_sdpa=ms / dense_eager_ms,
                          floor_ms=floor, vs_floor=ms / floor, error=error)
        del q, k, v, k_cache, v_cache
        torch.cuda.empty_cache()


def prefill_section(table: Table, flex: bool):
    ceilings = table.ceilings
    for length, batch in PREFILL_SHAPES:
        q = randn(batch, Q_HEADS, length, HEAD_DIM)
        k, v = randn(batch, KV_HEADS, length, HEAD_DIM), randn(batch, KV_HEADS, length, HEAD_DIM)
        base = dict(section="prefill", L=length, batch=batch)
        dense_ms = timed_ms(dense_sdpa(q, k, v, causal=True))
        floor = prefill_floor_ms(length * (length + 1) / 2, length, batch, ceilings)
        table.add(**base, p="1", impl="dense SDPA (causal)", ms=dense_ms, vs_sdpa=1.0, floor_ms=floor,
                  vs_floor=dense_ms / floor, error=None)
        flash_sdpa_row(table, base, lambda backend: dense_sdpa(q, k, v, True, backend), dense_ms, floor, graph=False)
        flash4_causal_row(table, base, q, k, v, dense_ms, floor)
        if flex:
            window = sliding_window(WINDOW)
            ms = timed_ms(engine_attention("ppa_flex", window, q, k, v))
            floor = prefill_floor_ms(int(keys_per_query(window, length).sum()), length, batch, ceilings)
            table.add(**base, p="0", impl="window only (flex, engine)", ms=ms, vs_sdpa=ms / dense_ms,
                      floor_ms=floor, vs_floor=ms / floor, error=None)
        for power in ["0"] + POWERS:
            pattern = PowerPattern(power, WINDOW)
            floor = prefill_floor_ms(int(keys_per_query(pattern, length).sum()), length, batch, ceilings)
            ref = reference(q, k, v, pattern, length)
            out = poisoned(*q.shape)
            fn = lambda: ppa_attention(q, k, v, pattern, out=out)  # noqa: E731
            error = checked(f"ppa kernel prefill L={length} p={power}", fn(), ref)
            ms = timed_ms(fn)
            on_flash4 = flash4_lists(q, k, pattern) is not None
            table.add(**base, p=power, impl="ppa kernel (FlashAttention-4)" if on_flash4 else "ppa kernel", ms=ms,
                      vs_sdpa=ms / dense_ms, floor_ms=floor, vs_floor=ms / floor, error=error)
            if on_flash4:  # what a machine without FlashAttention-4 runs: the cost model's Triton plan
                tables = offset_tables(pattern, length, DEVICE)
                fn = lambda: prefill.prefill(q, k, v, out, tables, HEAD_DIM**-0.5)  # noqa: E731
                error = checked(f"ppa kernel (Triton) prefill L={length} p={power}", fn(), ref)
                ms = timed_ms(fn)
                table.add(**base, p=power, impl="ppa kernel (Triton only)", ms=ms, vs_sdpa=ms / dense_ms,
                          floor_ms=floor, vs_floor=ms / floor, error=error)
            if flex and power != "0":
                fn = engine_attention("ppa_flex", pattern, q, k, v)
                error = relative_error(fn(), ref)
                ms = timed_ms(fn)
                table.add(**base, p=power, impl="flex PPA (engine)", ms=ms, vs_sdpa=ms / dense_ms, floor_ms=floor,
                          vs_floor=ms / floor, error=error)
            del ref
        del q, k, v
        torch.cuda.empty_cache()


def engine_section(table: Table):
    """Issue 2's check: the engine's attention paths against the dense masked reference."""
    for length in ENGINE_LENGTHS:
        q, k, v = randn(1, Q_HEADS, length, HEAD_DIM), randn(1, KV_HEADS, length, HEAD_DIM), randn(1, KV_HEADS, length, HEAD_DIM)
        for power in POWERS:
            pattern = PowerPattern(power, WINDOW)
            ref = reference(q, k, v, pattern, length)
            for implementation in ("ppa_flex", "ppa_kernel"):
                error = checked(f"{implementation} L={length} p={power}", engine_attention(implementation, pattern, q, k, v)(), ref)
                table.add(section="engine check", L=length, batch=1, p=power, impl=implementation, error=error)
    # Host time of one decode-step attention call as a layer makes it (mask built once per step).
    # A short cache keeps the GPU's share to a few microseconds, so the loop times the launches.
    length = ENGINE_LENGTHS[0]
    q, k, v = randn(DECODE_BATCH, Q_HEADS, 1, HEAD_DIM), randn(DECODE_BATCH, KV_HEADS, length, HEAD_DIM), randn(DECODE_BATCH, KV_HEADS, length, HEAD_DIM)
    for implementation, pattern in (("sdpa", PowerPattern(1, 0)), ("ppa_kernel", PowerPattern("1/2", WINDOW)),
                                    ("ppa_kernel", PowerPattern("3/4", WINDOW))):  # 2 and 6 blocks: one program per row, and splits
        table.add(section="engine host time", L=length, batch=DECODE_BATCH, p=str(pattern.power), impl=implementation,
                  host_us=host_us(engine_attention(implementation, pattern, q, k, v)))


GENERATE_DENSE, GENERATE_PPA = "dense SDPA, generate()", "ppa kernel, generate()"
GENERATE_DENSE_FLASH = "dense SDPA (FlashAttention backend), generate()"
ENGINE_PPA = "ppa kernel, engine (CUDA-graph decode)"


def e2e_section(table: Table, rounds: int):
    """transformers generate on a random-weight Llama whose attention has Nano-9B-v2's shape."""
    from transformers import LlamaConfig, LlamaForCausalLM

    batch, prompt, new_tokens, layers = E2E["batch"], E2E["prompt"], E2E["new_tokens"], E2E["layers"]
    config = LlamaConfig(vocab_size=E2E["vocab"], hidden_size=E2E["hidden"], intermediate_size=E2E["intermediate"],
                         num_hidden_layers=layers, num_attention_heads=Q_HEADS, num_key_value_heads=KV_HEADS,
                         head_dim=HEAD_DIM, max_position_embeddings=prompt + new_tokens)
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(config).to(DTYPE).eval()
    ids = torch.randint(0, config.vocab_size, (batch, prompt), device=DEVICE)

    def generate(implementation, pattern, backends, graph, tokens, n):
        model.config._attn_implementation = implementation
        hf_attention.set_pattern(model.config, pattern)
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode(), sdpa_kernel(backends):
            if graph:  # the engine's own decoding: static cache, each step replayed from a CUDA graph
                rows = hf_graph.greedy_generate(model, tokens, torch.ones_like(tokens), n, done=lambda rows: False)
                assert all(len(row) == n for row in rows)
            else:
                out = model.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=n,
                                     min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
                assert out.shape[1] == tokens.shape[1] + n
        torch.cuda.synchronize()
        return time.perf_counter() - start

    # Each way of decoding has its own dense row, and PPA is compared with it (vs_dense_same_decode):
    # through generate(), stock dense SDPA, the faster of torch's default dispatch and its
    # FlashAttention backend (the default on the H100 is cuDNN, which builds a new plan on the host
    # for every new key length, i.e. at every decode step); through the engine's CUDA-graph decode,
    # the same engine at p = 1 (dense SDPA prefill, the decode kernel over every row), since stock
    # SDPA cannot be captured in a graph (its mask builder reads the padding mask on the host).
    # vs_sdpa compares everything with the dense generate(), which mixes the graphs' gain with PPA's.
    runs = [("sdpa", PowerPattern(1, 0), SDPA_BACKENDS, False, GENERATE_DENSE),
            ("sdpa", PowerPattern(1, 0), [SDPBackend.FLASH_ATTENTION], False, GENERATE_DENSE_FLASH)] + [
        ("ppa_kernel", PowerPattern(p, WINDOW), SDPA_BACKENDS, False, GENERATE_PPA) for p in ("1/2", "3/4")] + [
        ("ppa_kernel", PowerPattern(p, WINDOW), SDPA_BACKENDS, True, ENGINE_PPA) for p in ("1/2", "3/4", "1")]
    times = {(name, pattern): {"prefill": [], "total": []} for _, pattern, _, _, name in runs}
    for implementation, pattern, backends, graph, name in runs:  # warm-up at full length: compile every kernel shape
        generate(implementation, pattern, backends, graph, ids, 4)
    # A generation is host-bound and the host is shared: runs move by tens of percent between
    # repeats, so the runs take turns, `rounds` times, and each reports its median.
    for _ in range(rounds):
        for implementation, pattern, backends, graph, name in runs:
            times[name, pattern]["prefill"].append(generate(implementation, pattern, backends, graph, ids, 1))
            times[name, pattern]["total"].append(generate(implementation, pattern, backends, graph, ids, new_tokens))
    for implementation, pattern, backends, graph, name in runs:
        run = times[name, pattern]
        prefill_s, total_s = statistics.median(run["prefill"]), statistics.median(run["total"])
        table.add(section="e2e generate", L=prompt, batch=batch, p=str(pattern.power), impl=name,
                  ms=total_s * 1e3, prefill_ms=prefill_s * 1e3, step_ms=(total_s - prefill_s) / (new_tokens - 1) * 1e3,
                  spread=(max(run["total"]) - min(run["total"])) / total_s, totals_s=run["total"],
                  tokens_per_s=batch * new_tokens / total_s, layers=layers, new_tokens=new_tokens)
    e2e = [row for row in table.rows if row["section"] == "e2e generate"]
    generate_ms = min(r["ms"] for r in e2e if r["impl"] in (GENERATE_DENSE, GENERATE_DENSE_FLASH))
    engine_ms = next(r["ms"] for r in e2e if r["impl"] == ENGINE_PPA and r["p"] == "1")
    for row in e2e:
        row["vs_sdpa"] = row["ms"] / generate_ms
        row["vs_dense_same_decode"] = row["ms"] / (engine_ms if row["impl"] == ENGINE_PPA else generate_ms)


# -- report -------------------------------------------------------------------------------------

def markdown(table: Table) -> str:
    c = table.ceilings
    lines = [f"# PPA attention benchmark ({c['gpu']}, {c.get('date', 'undated')})", "",
             f"Measured ceilings: copy bandwidth {c['bandwidth_GBps']:.0f} GB/s, bf16 matmul {c['matmul_TFLOPs']:.0f} TFLOP/s. "
             f"Shape: {Q_HEADS} query / {KV_HEADS} KV heads, head {HEAD_DIM}, bf16, w = {WINDOW}. "
             "Times are medians (triton.testing.do_bench); decode `ms` replays a CUDA graph (GPU time), `eager_ms` "
             "is a plain Python call (launch costs included); vs_sdpa = time / dense SDPA time at the same L; "
             "vs_floor = time / floor; error = relative error against the float64 dense masked reference. "
             f"PPA prefill here: {c.get('prefill_path', 'not recorded')}.", ""]
    columns = ("L", "batch", "p", "impl", "ms", "eager_ms", "host_us", "vs_sdpa", "vs_dense_same_decode", "floor_ms",
               "vs_floor", "prefill_ms", "step_ms", "spread", "tokens_per_s", "error")
    return "\n".join(lines + section_tables(table.rows, columns, table.errors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--sections", default="engine,decode,prefill,e2e")
    parser.add_argument("--no-flex", action="store_true", help="skip the flex attention rows (they compile for minutes)")
    parser.add_argument("--label", default="", help="file name suffix, e.g. the GPU: attention_h100.json")
    parser.add_argument("--rounds", type=int, default=5, help="e2e: rounds of generations, each run taking turns")
    args = parser.parse_args()
    name = "attention" + (f"_{args.label}" if args.label else "")
    sections = args.sections.split(",")
    table = Table(device_ceilings())
    print(json.dumps(table.ceilings), flush=True)
    runners = {"engine": lambda: engine_section(table), "decode": lambda: decode_section(table, not args.no_flex),
               "prefill": lambda: prefill_section(table, not args.no_flex), "e2e": lambda: e2e_section(table, args.rounds)}
    args.out.mkdir(parents=True, exist_ok=True)
    for section in sections:
        print(f"== {section}", flush=True)
        try:
            runners[section]()
        except Exception:  # record and go on: one broken section must not lose the others' figures
            table.errors.append(f"{section}: {traceback.format_exc(limit=3)}")
            print(table.errors[-1], flush=True)
        (args.out / f"{name}.json").write_text(json.dumps(
            {"ceilings": table.ceilings, "rows": table.rows, "errors": table.errors}, indent=1))
        (args.out / f"{name}.md").write_text(markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()
