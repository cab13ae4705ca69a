"""The PPA names other modules import from here; the pattern families live in ppa_eval.patterns."""

from ppa_eval.patterns import (PatternError, PowerPattern, format_power, full_causal, keys_per_query, mask_mod,
                               parse_power, parse_window, power_positions, sliding_window)

__all__ = ["PatternError", "PowerPattern", "format_power", "full_causal", "keys_per_query", "mask_mod",
           "parse_power", "parse_window", "power_positions", "sliding_window"]
