"""Attention pattern families: which keys each query attends, exactly, and what that costs.

A family is one module: PPA (ppa.py; sliding window and full attention are its p = 0 and p = 1
cases) and PowerAttention (power_attention.py), both block-offset patterns with sinks (base.py
says what a family declares), power retention (retention.py: how runs name a retention model's
attention, which is no mask), plus any installed through the entry point group
`ppa_eval.patterns` (families.py). spec.py names them in one string; receptive_field.py and
cost.py compare them.
"""

from ppa_eval.patterns.base import (BlockPattern, Knob, PatternError, Spelling, dense_pairs, is_full_up_to,
                                   keys_per_query, mask_mod, pairs, parse_count, sink_part)
from ppa_eval.patterns.cost import match_cost
from ppa_eval.patterns.power_attention import PowerAttention
from ppa_eval.patterns.ppa import (DEFAULT_WINDOW, PowerPattern, format_power, full_causal, parse_power, parse_window,
                                   power_positions, sliding_window)
from ppa_eval.patterns.receptive_field import layers_to_last
from ppa_eval.patterns.retention import PowerRetention
from ppa_eval.patterns.spec import CONFIG_KEY, format_spec, parse_spec, sort_key

__all__ = ["BlockPattern", "CONFIG_KEY", "DEFAULT_WINDOW", "Knob", "PatternError", "PowerAttention", "PowerPattern", "PowerRetention",
           "Spelling", "dense_pairs", "format_power", "format_spec", "full_causal", "is_full_up_to", "keys_per_query",
           "layers_to_last", "mask_mod", "match_cost", "pairs", "parse_count", "parse_power", "parse_spec",
           "parse_window", "power_positions", "sink_part", "sliding_window", "sort_key"]
