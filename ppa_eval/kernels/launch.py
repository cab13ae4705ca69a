"""Host-side launch work, run on every kernel call (every layer of every step).

Plain integers on purpose: triton.cdiv and triton.next_power_of_2 are constexpr functions, which
cost the host far more per call than the arithmetic itself (results/bench/host_costs.md).
"""

from __future__ import annotations

from triton.compiler import CompiledKernel


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def group_block(group: int) -> int:
    """The tensor-core tile side that holds a GQA group's query heads: a power of two, at least 8."""
    return max(1 << (group - 1).bit_length(), 8)


class Relaunch:
    """A launch to repeat with another layer's q, k, v and out (a kernel's first four arguments),
    everything else as it was: the layers of a vLLM step launch the same kernels with the same
    integers. Triton's launch binds and specialises every argument on each call (some 40 for a
    prefill kernel); the compiled kernel it returned takes them as they are, at a fraction of the
    host time (results/bench/host_costs.md)."""

    def __init__(self, compiled: CompiledKernel, grid: tuple[int, int], rest: tuple):
        self.runner, self.rest = compiled[(*grid, 1)], rest

    def __call__(self, q, k, v, out) -> None:
        self.runner(q, k, v, out, *self.rest)


def launch(kernel, grid: tuple[int, int], args: tuple, constants: dict, shape, launches: list | None = None) -> None:
    """kernel[grid](*args, **constants) with shape's num_warps and num_stages; launches: a list to
    append the launch to, to repeat (None under Triton's CPU interpreter, which compiles nothing)."""
    compiled = kernel[grid](*args, **constants, num_warps=shape.num_warps, num_stages=shape.num_stages)
    if launches is None:
        return
    if not isinstance(compiled, CompiledKernel):
        launches.append(None)
        return
    # The compiled kernel takes every parameter in order, constexprs included (as JITFunction.run passes them).
    launches.append(Relaunch(compiled, grid, (*args[4:], *(constants[p.name] for p in kernel.params if p.is_constexpr))))
