"""The sinks: the first `sink` real slots of a row (from kv_start on, so sinks count tokens, not
padding slots), attended by every query at or after them.

The sinks are no distance, so the kernels visit them in a short extra walk over those slots, next
to their walk over the distance list S. A sink at a distance in S is visited there already, and
softmax must see each key once, so the sink walk keeps only the sinks S does not reach.
"""

import triton
import triton.language as tl


@triton.jit
def sink_outside_distances(Counts, key_slot, query_slot, start, sink, valid):
    """Elementwise: is `key_slot` a sink of the query at `query_slot` whose distance is not in S?

    counts[d] (the number of distances in S up to d) steps up exactly at the distances in S."""
    d = query_slot - key_slot
    is_sink = valid & (key_slot >= start) & (key_slot < start + sink) & (d >= 0)
    here = tl.load(Counts + d, mask=is_sink, other=0)
    before = tl.load(Counts + d - 1, mask=is_sink & (d > 0), other=0)
    return is_sink & (here == before)
