"""The older ways of naming a pattern, read (and, where older readers need it, written) here only;
everything else sees specs and pattern objects.

  - Model configs: before specs, a PPA checkpoint named its pattern `ppa_power`/`ppa_window` or
    {"ppa": {"power", "window"}}; such checkpoints still load, and sink-free PPA is written in both
    forms so that older readers still understand a checkpoint ppa-eval saves.
  - manifest.json and metrics.json made before specs name PPA by `power` and `window` only.
  - PPA_EVAL_POWER and PPA_EVAL_WINDOW, the vLLM plug-in's older variables, are refused rather
    than ignored, so that an old setting cannot leave a model attending densely.
"""

from __future__ import annotations

import os

from ppa_eval.patterns import (CONFIG_KEY, DEFAULT_WINDOW, BlockPattern, PatternError, PowerPattern, PowerRetention,
                               format_power, format_spec, parse_power, parse_spec)
from ppa_eval.retention import MODEL_TYPES as RETENTION_MODEL_TYPES

# Every config key that may name a pattern: the spec, and the older PPA keys.
CONFIG_KEYS = (CONFIG_KEY, "ppa_power", "ppa_window", "ppa")
RETIRED_ENVIRONMENT = ("PPA_EVAL_POWER", "PPA_EVAL_WINDOW")


def pattern_from_config(config: dict) -> BlockPattern | None:
    """The pattern a model config names (config.json, or a config object's vars()), or None when it
    names none. A config that names a pattern both ways must name the same one. A retention
    checkpoint (Brumby, PowerCoder) names its own, from its model type and cache keys."""
    if config.get("model_type") in RETENTION_MODEL_TYPES:
        return PowerRetention.from_config(config)
    nested = config.get("ppa") if isinstance(config.get("ppa"), dict) else {}
    spec = config.get(CONFIG_KEY, nested.get("attention"))
    power = config.get("ppa_power", nested.get("power"))
    window = config.get("ppa_window", nested.get("window"))
    older = None if power is None else PowerPattern(parse_power(power), DEFAULT_WINDOW if window is None else window)
    if spec is None:
        return older
    pattern = parse_spec(spec)
    if older is not None and older != pattern:
        raise PatternError(f"the config says {CONFIG_KEY} {spec!r} but ppa_power/ppa_window say "
                           f"{format_spec(older)!r}; keep only {CONFIG_KEY}")
    return pattern


def config_entries(pattern: BlockPattern) -> dict:
    """The config keys that name `pattern`: the spec, and for sink-free PPA also the older keys."""
    entries = {CONFIG_KEY: format_spec(pattern)}
    if isinstance(pattern, PowerPattern) and pattern.sink == 0:
        entries |= {"ppa_power": format_power(pattern.power), "ppa_window": pattern.window}
    return entries


def config_overrides(pattern: BlockPattern) -> dict:
    """Entries that make a config name `pattern` whatever it named before (vLLM's hf_overrides): the
    config_entries, and None for every other key, so that a stale older key cannot contradict it."""
    return dict.fromkeys(CONFIG_KEYS) | config_entries(pattern)


def with_attention(record: dict) -> dict:
    """A manifest or metrics.json made before specs names PPA by power and window only: add its spec
    (PatternError when those do not name a pattern)."""
    if "attention" in record or "power" not in record:
        return record
    if not isinstance(record["power"], (str, int)) or isinstance(record["power"], bool):
        raise PatternError(f"'power' must be a fraction string such as \"3/4\", got {record['power']!r}")
    return {**record, "attention": format_spec(PowerPattern(record["power"], record.get("window", DEFAULT_WINDOW)))}


def refuse_retired_environment(replacement: str) -> None:
    """PatternError when a retired variable is set; `replacement` is the variable to set instead."""
    retired = [name for name in RETIRED_ENVIRONMENT if os.environ.get(name)]
    if retired:
        raise PatternError(f"PPA_EVAL_POWER and PPA_EVAL_WINDOW are no longer read (found {', '.join(retired)}); "
                           f"set {replacement} to a spec instead, e.g. {replacement}=ppa:p=3/4,w=64")
