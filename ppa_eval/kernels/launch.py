"""Host-side launch arithmetic, run on every kernel call (every layer of every decode step).

Plain integers on purpose: triton.cdiv and triton.next_power_of_2 are constexpr functions, some
5 us a call on the host in Triton 3.6 against 0.1 us for the arithmetic itself.
"""


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def group_block(group: int) -> int:
    """The tensor-core tile side that holds a GQA group's query heads: a power of two, at least 8."""
    return max(1 << (group - 1).bit_length(), 8)
