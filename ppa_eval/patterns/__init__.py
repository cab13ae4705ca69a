"""Attention pattern families: which keys each query attends, exactly, and what that costs.

Families (one module each): PPA (ppa.py; sliding window and full attention are its p = 0 and
p = 1 cases) and PowerAttention (power_attention.py), both block-offset patterns with sinks
(base.py). spec.py names them in one string, receptive_field.py and cost.py compare them.
"""

from ppa_eval.patterns.base import (BlockPattern, PatternError, dense_pairs, is_full_up_to, keys_per_query, mask_mod,
                                   pairs)
from ppa_eval.patterns.cost import match_cost
from ppa_eval.patterns.power_attention import PowerAttention
from ppa_eval.patterns.ppa import (PowerPattern, format_power, full_causal, parse_power, parse_window,
                                   power_positions, sliding_window)
from ppa_eval.patterns.receptive_field import layers_to_last
from ppa_eval.patterns.spec import config_entries, format_spec, parse_spec, pattern_from_config, series, sort_key

__all__ = ["BlockPattern", "PatternError", "PowerAttention", "PowerPattern", "config_entries", "dense_pairs",
           "format_power", "format_spec", "full_causal", "is_full_up_to", "keys_per_query", "layers_to_last", "mask_mod",
           "match_cost", "pairs", "parse_power", "parse_spec", "parse_window", "pattern_from_config",
           "power_positions", "series", "sliding_window", "sort_key"]
