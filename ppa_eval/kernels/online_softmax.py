"""One step of the streaming (online) softmax that every PPA kernel runs over its blocks of keys.

Scores arrive in log2 units (already multiplied by scale * log2(e)) with -inf where a key is not
attended. The running state per query row is m (largest score so far), l (sum of exp2(score - m))
and an fp32 accumulator that the caller rescales by `alpha` before adding p @ V.
"""

import triton
import triton.language as tl


@triton.jit
def online_softmax_step(s, m, l, AXIS: tl.constexpr):
    """Fold one block of scores `s` (reduced along AXIS) into (m, l); returns (p, alpha, m, l)."""
    m_new = tl.maximum(m, tl.max(s, AXIS))
    # A row that has seen no attended key yet keeps m = -inf; shift by 0 there so that
    # exp2(-inf - (-inf)) never produces NaN (its p and alpha come out 0).
    shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m - shift)
    p = tl.exp2(s - tl.expand_dims(shift, AXIS))
    l_new = l * alpha + tl.sum(p, AXIS)
    return p, alpha, m_new, l_new


@triton.jit
def normalized(acc, l, AXIS: tl.constexpr):
    """acc / l along AXIS; rows that attended no key (left padding) come out 0, not NaN."""
    return acc / tl.expand_dims(tl.where(l == 0.0, 1.0, l), AXIS)
