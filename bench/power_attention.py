"""PowerAttention through flex attention's block sparsity against dense SDPA, at long context.

PowerAttention (ppa_eval/patterns/power_attention.py) attends whole blocks, so at block = 128, flex's
tile, its block mask is exact: flex skips the unattended tiles and runs no mask function inside the
attended ones. block = 64 is run too: its blocks cut flex's tiles, so the diagonal tiles are partial
(the mask function runs inside them). Shape: Nano-9B-v2's attention layers, as bench/attention.py.

Rows, for prefill (causal, batch 1) and decode (one query per sequence against the whole cache,
batch 8) at each length:
  - dense SDPA (torch's default dispatch, GQA);
  - flex attention, torch.compile'd, with create_block_mask(mask_mod(pattern)) at BLOCK_SIZE = 128.
    density = tiles visited / tiles of the causal square (decode: of one query row of tiles);
    pairs = attended (query, key) pairs / causal pairs; mask_ms = building the block mask again
    once its compile is done (mask_first_s includes that compile; decode builds eagerly), first_call_s = the first flex
    call (its compile).
Each flex output is checked against a float64 masked reference on a slice of queries (evenly
spaced, first and last included), whose mask comes from the pattern's block table
(`blocks_attended`), not from the mask function flex runs. Times: CUDA events around each call
after warm-up, median; decode includes Python's launch costs (no CUDA graph).

    PYTHONPATH=. python bench/power_attention.py                   # GPU: L = 32,768 and 131,072
    PYTHONPATH=. python bench/power_attention.py --smoke --out /tmp  # CPU check, L = 512, eager flex

Writes power_attention.json and .md (power_attention_smoke.* with --smoke) to --out and prints the
tables. Rows left when --budget-s runs out are listed as skipped, so a run ends in time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from markdown_tables import section_tables
from ppa_eval.kernels.reference import relative_error
from ppa_eval.patterns import PowerAttention, dense_pairs, format_spec, mask_mod, pairs

Q_HEADS, KV_HEADS, HEAD_DIM = 40, 8, 128  # Nano-9B-v2's attention layers
DTYPE = torch.bfloat16
FLEX_BLOCK = 128
PATTERNS = [PowerAttention(128, 1, 1), PowerAttention(64, 1, 1)]
RUNS = {  # lengths, prefill batch, decode batch
    "full": dict(lengths=[32768, 131072], prefill_batch=1, decode_batch=8),
    "smoke": dict(lengths=[512], prefill_batch=1, decode_batch=2),
}
CHECK_QUERIES = 64
TOLERANCE = 1e-2
TIMED_MS = 300  # timing repetitions per row: about this long, 3 to 50 calls


# -- measuring ----------------------------------------------------------------------------------

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_ms(fn, device) -> float:
    """Median milliseconds of fn() after two warm-up calls (CUDA events on a GPU)."""
    fn(), fn()
    sync(device)

    def once() -> float:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    first = once()
    reps = max(3, min(50, int(TIMED_MS / max(first, 1e-3))))
    return statistics.median([first] + [once() for _ in range(reps - 1)])


def seconds(fn, device):
    """(fn(), wall seconds of that one call, synchronised)."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


# -- the two attentions and the reference ---------------------------------------------------------

def dense_sdpa(q, k, v, causal):
    return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)


def pattern_mask(pattern, length: int, device, decode: bool):
    """The pattern's mask function over (q_idx, kv_idx); in decode the one query sits at length - 1."""
    mod = mask_mod(pattern, length, str(device))
    if not decode:
        return mod
    last = length - 1

    def last_query(b, h, q_idx, kv_idx):
        # Every row of flex's padded query tile is the one real query, so whole tiles come out
        # full (no mask function inside them) instead of partial.
        return mod(b, h, q_idx * 0 + last, kv_idx)

    return last_query


def block_mask_builder(pattern, length: int, decode: bool, device, compiled: bool):
    """A callable building the block mask (one mask function for every call: a new one would recompile)."""
    mod = pattern_mask(pattern, length, device, decode)
    n_queries = 1 if decode else length
    # Prefill's L x L mask needs the compiled builder (eager materialises it). Decode's one row of
    # tiles is small eagerly, and compiling it fails on CPU in torch 2.13 (an inductor C++ error).
    return lambda: create_block_mask(mod, None, None, n_queries, length, device=str(device), BLOCK_SIZE=FLEX_BLOCK,
                                     _compile=compiled and not decode)


def density(mask, decode: bool, length: int) -> float:
    """Tiles flex visits (full and partial) over the tiles of the causal square (decode: of one row)."""
    visited = int(mask.kv_num_blocks.sum()) + int(mask.full_kv_num_blocks.sum())
    tiles = -(-length // FLEX_BLOCK)
    return visited / (tiles if decode else tiles * (tiles + 1) // 2)


def reference_mask(pattern, positions, length: int) -> np.ndarray:
    """Boolean [len(positions), length]: the keys each query attends, from the pattern's block table."""
    mask = np.zeros((len(positions), length), dtype=bool)
    for row, pos in enumerate(positions):
        blocks = np.repeat(pattern.blocks_attended(pos // pattern.block), pattern.block)[: pos + 1]
        mask[row, : pos + 1] = blocks  # keys 0 .. pos: the causal part
    return mask


def reference(q, k, v, pattern, positions):
    """float64 attention of the queries at `positions` (their rows of q, or q's one query in decode)."""
    allowed = torch.as_tensor(reference_mask(pattern, positions, k.shape[2]), device=q.device)
    rows = slice(None) if q.shape[2] == 1 else torch.as_tensor(positions, device=q.device)
    out = []
    for b in range(q.shape[0]):
        qb = q[b][:, rows].double().view(KV_HEADS, Q_HEADS // KV_HEADS, len(positions), HEAD_DIM)
        scores = torch.einsum("hgtd,hsd->hgts", qb, k[b].double()) * HEAD_DIM**-0.5
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        out.append(torch.einsum("hgts,hsd->hgtd", weights, v[b].double()).reshape(Q_HEADS, len(positions), HEAD_DIM))
    return torch.stack(out)


# -- rows ---------------------------------------------------------------------------------------

class Bench:
    def __init__(self, device, compiled: bool, budget_s: float):
        self.device, self.compiled, self.deadline = device, compiled, time.monotonic() + budget_s
        # One compiled flex for every row: torch.compile recompiles it per shape and mask function,
        # 8 times in a full run, which is dynamo's default limit; past it flex would run unfused.
        torch._dynamo.config.recompile_limit = 64
        self.flex = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention
        self.rows, self.errors = [], []

    def add(self, **row):
        self.rows.append(row)
        print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    def in_time(self, what: str) -> bool:
        if time.monotonic() < self.deadline:
            return True
        self.errors.append(f"skipped (time budget spent): {what}")
        print("  " + self.errors[-1], flush=True)
        return False

    def case(self, section: str, length: int, batch: int):
        """Dense SDPA, then flex with each pattern, on one set of random inputs."""
        decode = section == "decode"
        n_queries = 1 if decode else length
        if not self.in_time(f"{section} L={length}"):
            return
        randn = lambda *shape: torch.randn(*shape, device=self.device, dtype=DTYPE)  # noqa: E731
        q = randn(batch, Q_HEADS, n_queries, HEAD_DIM)
        k, v = randn(batch, KV_HEADS, length, HEAD_DIM), randn(batch, KV_HEADS, length, HEAD_DIM)
        base = dict(section=section, L=length, batch=batch)
        dense_ms = timed_ms(dense_sdpa(q, k, v, causal=not decode), self.device)
        self.add(**base, impl="dense SDPA", pattern="full", ms=dense_ms, vs_sdpa=1.0)
        positions = [length - 1] if decode else np.linspace(0, length - 1, CHECK_QUERIES).round().astype(int).tolist()
        for pattern in PATTERNS:
            spec = format_spec(pattern)
            if not self.in_time(f"{section} L={length} {spec}"):
                continue
            try:
                build = block_mask_builder(pattern, length, decode, self.device, self.compiled)
                mask, mask_first_s = seconds(build, self.device)
                mask_ms = 1e3 * seconds(build, self.device)[1]
                run = lambda: self.flex(q, k, v, block_mask=mask, enable_gqa=True)  # noqa: E731
                out, first_call_s = seconds(run, self.device)
                error = relative_error(out if decode else out[:, :, positions], reference(q, k, v, pattern, positions))
                if not error <= TOLERANCE:
                    self.errors.append(f"{section} L={length} {spec}: relative error {error:.3g} > {TOLERANCE}")
                del out
                ms = timed_ms(run, self.device)
            except Exception:  # record and go on: one failing row must not lose the others' figures
                self.errors.append(f"{section} L={length} {spec}: {traceback.format_exc(limit=2)}")
                print(self.errors[-1], flush=True)
                continue
            self.add(**base, impl="flex (block mask)", pattern=spec, ms=ms, vs_sdpa=ms / dense_ms,
                     density=density(mask, decode, length), pairs=pairs_ratio(pattern, length, decode),
                     mask_ms=mask_ms, mask_first_s=mask_first_s, first_call_s=first_call_s, error=error)
            del mask
        del q, k, v
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def pairs_ratio(pattern, length: int, decode: bool) -> float:
    """Attended (query, key) pairs over causal pairs (decode: keys of the last query over length)."""
    if decode:
        return float(pattern.blocks_attended((length - 1) // pattern.block).repeat(pattern.block)[:length].sum()) / length
    return pairs(pattern, length) / dense_pairs(length)


# -- report -------------------------------------------------------------------------------------

COLUMNS = ("L", "batch", "impl", "pattern", "ms", "vs_sdpa", "density", "pairs", "mask_ms", "mask_first_s",
           "first_call_s", "error")


def markdown(meta: dict, rows: list, errors: list) -> str:
    lines = [f"# PowerAttention through flex attention vs dense SDPA ({meta['device']}, {meta['date']})", "",
             f"torch {meta['torch']}, triton {meta['triton']}. Shape: {Q_HEADS} query / {KV_HEADS} KV heads, head "
             f"{HEAD_DIM}, bf16; prefill batch {meta['prefill_batch']} (causal), decode batch {meta['decode_batch']} "
             f"(one query per sequence). Flex: {'torch.compile' if meta['compiled'] else 'eager (unfused)'}, "
             f"BLOCK_SIZE {FLEX_BLOCK}. ms = median per call; vs_sdpa = ms / dense SDPA ms; density = tiles flex "
             "visits / causal tiles; pairs = attended pairs / causal pairs; mask_ms = block-mask rebuild, "
             "mask_first_s / first_call_s = first block mask / first flex call (compiles included); error = "
             f"relative error against a float64 masked reference on {CHECK_QUERIES} queries (decode: every sequence).", ""]
    return "\n".join(lines + section_tables(rows, COLUMNS, errors))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--smoke", action="store_true", help="L = 512 on CPU (or the GPU if there is one), to check it runs")
    parser.add_argument("--compile", choices=("auto", "yes", "no"), default="auto",
                        help="torch.compile flex and the block mask (auto: on a GPU; eager flex on CPU is unfused)")
    parser.add_argument("--budget-s", type=float, default=200.0, help="skip the rows left after this many seconds")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    compiled = device.type == "cuda" if args.compile == "auto" else args.compile == "yes"
    run = RUNS["smoke" if args.smoke else "full"]
    import triton

    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "torch": torch.__version__,
            "triton": triton.__version__, "compiled": compiled, **run}
    print(json.dumps(meta), flush=True)
    bench = Bench(device, compiled, args.budget_s)
    name = "power_attention_smoke" if args.smoke else "power_attention"
    args.out.mkdir(parents=True, exist_ok=True)
    for length in run["lengths"]:
        for section, batch in (("prefill", run["prefill_batch"]), ("decode", run["decode_batch"])):
            print(f"== {section} L={length}", flush=True)
            torch.manual_seed(length)
            bench.case(section, length, batch)
            (args.out / f"{name}.json").write_text(json.dumps(
                {"meta": meta, "rows": bench.rows, "errors": bench.errors}, indent=1))
            (args.out / f"{name}.md").write_text(markdown(meta, bench.rows, bench.errors))
    print(markdown(meta, bench.rows, bench.errors))


if __name__ == "__main__":
    main()
