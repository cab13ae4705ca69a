"""What every pattern family shares, and the exact numbers computed from it without an L x L matrix.

Every family here is a causal *block-offset pattern with sink blocks*: cut the sequence into blocks
of `block` tokens (block = 1 for token-level patterns such as PPA); the query at position i, in
block a = i // block, attends the key k <= i, in block b = k // block, iff

    d = a - b is in the family's fixed set D of block distances   (`distance_table`), or
    b < sink                                                       (sink blocks, StreamingLLM)

So a query attends whole earlier blocks, and in its own block (d = 0) the keys up to itself. Apart
from the sinks the pattern is the same for every query, which is what makes the counts below
closed-form and the receptive field a breadth-first search over distances (receptive_field.py).

A family is a frozen dataclass that inherits BlockPattern, in one module, and declares
  - what it computes: `block`, `sink`, `distance_table(n)` and `mask_parts(length, device)`, named
    attention-gym style mask functions (b, h, q_idx, kv_idx) -> bool whose union is the pattern
    (`mask_mod` and-s causality onto them);
  - how it is named: `spellings`, the spec names it is parsed from (keys, defaults, an example,
    the key match_cost may choose), and `spec()`, its canonical spec string (spec.py);
  - where it runs: `kernels`, the attention kernels that implement it;
  - how results name and order it: `run_name()`, `series()`, `sort_key()`, `fields()`, each with a
    default here.
families.py registers the families: the built-in ones and those installed through an entry point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, ClassVar

import numpy as np

from ppa_eval.errors import PPAEvalError


class PatternError(PPAEvalError):
    """A user-supplied pattern, spec or parameter that does not define a pattern."""


def parse_count(value: str | int, name: str, unit: str, minimum: int = 0) -> int:
    """A whole number of `unit` >= minimum, as typed or configured."""
    if isinstance(value, bool):
        raise PatternError(f"{name} must be a whole number of {unit} >= {minimum}, got {value!r}")
    try:
        count = int(str(value).strip())
    except ValueError:
        raise PatternError(f"{name} must be a whole number of {unit} >= {minimum}, got {value!r}") from None
    if count < minimum:
        raise PatternError(f"{name} must be >= {minimum} {unit}, got {count}")
    return count


# The attention kernels a family runs on: boolean-mask SDPA and flex attention run every family
# (they evaluate mask_parts); the Triton kernels (ppa_eval.kernels) only families that declare them:
# they walk a token-level distance list whose first `window` distances are the dense band, as PPA's.
SDPA, FLEX, TRITON = "sdpa", "flex", "triton"


@dataclass(frozen=True)
class Knob:
    """The key of a spelling that `match_cost` chooses: an exact fraction in [0, 1] (`minimum` None)
    or a whole number from `minimum` up to the number of blocks in the length, and pairs(L) must
    not decrease as it grows."""
    key: str
    minimum: int | None = None


@dataclass(frozen=True)
class Spelling:
    """One spec name of a family, `name:key=value,...`: its keys and their defaults (None: required),
    an example for error messages, and `build(**values)`, the pattern from the values (as typed, or
    already values; the pattern class checks them)."""
    name: str
    keys: dict = field(hash=False)
    example: str
    build: Callable[..., "BlockPattern"]
    knob: Knob | None = None


class BlockPattern:
    """Shared behaviour of the pattern families (see the module docstring)."""

    block: int  # tokens per block (1: token level)
    sink: int   # sink blocks: every query attends blocks 0 .. sink-1 (tokens when block = 1)
    spellings: ClassVar[tuple[Spelling, ...]]
    kernels: ClassVar[frozenset[str]] = frozenset({SDPA, FLEX})

    def spec(self) -> str:
        """The canonical spec string: parse_spec(pattern.spec()) == pattern."""
        raise NotImplementedError

    def run_name(self) -> str:
        """How a run directory names the pattern (after `<checkpoint>__`): the spec, safe for a file name."""
        return self.spec().replace(":", "_").replace(",", "_").replace("=", "").replace("/", "-")

    def series(self) -> str:
        """The curve the pattern belongs to when patterns are compared across costs: its spelling,
        and its sink when it has one ("window+sink4")."""
        name = self.spec().partition(":")[0]
        return f"{name}+sink{self.sink}" if self.sink else name

    def sort_key(self) -> tuple:
        """Order among the patterns of its own family (spec.sort_key orders the families)."""
        return (self.spec(),)

    def fields(self) -> dict:
        """What manifest.json and metrics.json record beside the spec (JSON values): none by default."""
        return {}

    def distance_table(self, n: int) -> np.ndarray:
        """Boolean [n] over block distances d = 0 .. n-1: True where d is in D."""
        raise NotImplementedError

    def mask_parts(self, length: int, device=None) -> dict:
        """{name: mask function} whose union, and-ed with causality, is the pattern (for q_idx < length)."""
        raise NotImplementedError

    def blocks_attended(self, last_block: int) -> np.ndarray:
        """Boolean [last_block + 1] over blocks b: does a query in block `last_block` attend block b?"""
        attended = self.distance_table(last_block + 1)[::-1].copy()  # index b holds d = last_block - b
        attended[: self.sink] = True
        return attended

    def relative_positions(self, length: int) -> np.ndarray:
        """Sorted j = i - k + 1 of the keys attended by the query at the last position i = length - 1."""
        if length < 1:
            return np.zeros(0, dtype=np.int64)
        keys = np.flatnonzero(np.repeat(self.blocks_attended((length - 1) // self.block), self.block)[:length])
        return (length - keys)[::-1]


def keys_per_query(pattern: BlockPattern, length: int) -> np.ndarray:
    """How many keys each query at positions 0 .. length-1 attends, in O(length).

    Blocks attended by a query in block a: the sink blocks it can see, min(sink, a + 1), plus the
    distances d in D with a - d >= sink, i.e. d <= a - sink: a prefix count of D. Every attended
    block before a is whole; block a itself, when attended, counts only the keys up to the query.
    """
    if length < 1:
        return np.zeros(0, dtype=np.int64)
    block, sink = pattern.block, pattern.sink
    positions = np.arange(length, dtype=np.int64)
    a = positions // block
    table = pattern.distance_table(int(a[-1]) + 1)
    counts = np.concatenate([[0], np.cumsum(table, dtype=np.int64)])  # counts[r + 1] = #{d in D: d <= r}
    blocks = np.minimum(sink, a + 1) + counts[np.maximum(a - sink + 1, 0)]
    own_block = table[0] | (a < sink)
    return block * (blocks - own_block) + own_block * (positions - a * block + 1)


def pairs(pattern: BlockPattern, length: int) -> int:
    """Attended (query, key) pairs over the causal square of `length` positions."""
    return int(keys_per_query(pattern, length).sum())


def dense_pairs(length: int) -> int:
    return length * (length + 1) // 2


def is_full_up_to(pattern: BlockPattern, length: int) -> bool:
    """Does `pattern` attend every causal pair of every sequence of at most `length` tokens? (Then a
    dense kernel computes it exactly: p = 1, or a window at least as long as the sequences.)"""
    return pairs(pattern, length) == dense_pairs(length)


@lru_cache(maxsize=16)  # one function (and table) per (pattern, length, device): decode steps share it
def mask_mod(pattern: BlockPattern, length: int, device=None):
    """A flex-attention style mask function (b, h, q_idx, kv_idx) -> bool over absolute positions.

    It includes causality (q >= kv). Table-based parts are exact for q_idx < `length` and clamp
    their index, because flex evaluates mask functions on out-of-range padding indices; callers
    size `length` to at least the largest q_idx + 1.
    """
    from transformers.masking_utils import and_masks, or_masks

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    return and_masks(causal, or_masks(*pattern.mask_parts(length, device).values()))


def sink_part(tokens: int) -> dict:
    """The sink mask part: keys 0 .. tokens-1, seen by every query (none when tokens = 0)."""
    if tokens == 0:
        return {}

    def sink(b, h, q_idx, kv_idx):
        return kv_idx < tokens

    return {"sink": sink}
