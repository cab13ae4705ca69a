"""After installing the `flash4` extra (docs/kernels.md): which path PPA prefill takes here and why,
then one whole-sequence prefill that the cost model gives to FlashAttention-4 (8,192 tokens x 2,
p = 7/8, Nano-9B-v2's 40 / 8 heads of 128), checked against the float64 dense masked reference.
Exits 1 if FlashAttention-4 did not take it or its output is off.

    PYTHONPATH=. python bench/check_flash4.py
"""

import sys
import time

import torch

from ppa_eval.kernels import flash4, ppa_attention
from ppa_eval.kernels.attention import flash4_lists
from ppa_eval.kernels.reference import attended_distances, masked_attention, relative_error
from ppa_eval.patterns import PowerPattern

print(f"{torch.cuda.get_device_name()}: PPA prefill takes {flash4.status('cuda')}")
q = torch.randn(2, 40, 8192, 128, device="cuda", dtype=torch.bfloat16)
k, v = (torch.randn(2, 8, 8192, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
pattern = PowerPattern("7/8", 64)
on_flash4 = flash4_lists(q, k, pattern) is not None
start = time.perf_counter()
out = ppa_attention(q, k, v, pattern)
torch.cuda.synchronize()
ref = masked_attention(q[:1, :, -512:], k[:1], v[:1], attended_distances("7/8", 64, 8192), scale=128**-0.5)
error = relative_error(out[:1, :, -512:], ref)
print(f"FlashAttention-4 took it: {on_flash4}; first call {time.perf_counter() - start:.1f} s (compiles); "
      f"relative error of the last 512 queries {error:.2e}")
sys.exit(0 if on_flash4 and error < 1e-2 else 1)
