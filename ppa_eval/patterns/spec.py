"""One spec string for every pattern, in the CLI, model configs, manifests and run names.

    ppa:p=3/4,w=64[,sink=S]                 PPA (w defaults to 64, the paper's window; sink to 0)
    powerattention:block=B,window=W,sink=S  PowerAttention (defaults 64, 1, 1: see power_attention.py)
    window:w=W[,sink=S]                     sliding window of W tokens = ppa with p = 0
    full                                    full causal attention = ppa with p = 1, w = 0

format_spec prints the canonical form (keys in the order above, sink only when nonzero; a PPA
with p = 0 prints as window, p = 1 with w = 0 and no sink as full), and
parse_spec(format_spec(x)) == x for every pattern.

Model configs (config.json, or attributes of a transformers config) carry the spec as
`ppa_attention`; the older PPA convention, `ppa_power`/`ppa_window` or {"ppa": {"power", "window"}},
keeps working, and sink-free PPA is written in both forms so older readers still understand it.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from ppa_eval.patterns.base import BlockPattern, PatternError
from ppa_eval.patterns.power_attention import PowerAttention
from ppa_eval.patterns.ppa import PowerPattern, format_power, parse_power

DEFAULT_WINDOW = 64  # tokens; every PPA variant in the paper was fine-tuned with w = 64

# family -> {key: default (None: required)}
FAMILIES = {
    "ppa": {"p": None, "w": DEFAULT_WINDOW, "sink": 0},
    "powerattention": {"block": 64, "window": 1, "sink": 1},
    "window": {"w": DEFAULT_WINDOW, "sink": 0},
    "full": {},
}
EXAMPLES = {"ppa": "ppa:p=3/4,w=64", "powerattention": "powerattention:block=64,window=1,sink=1",
            "window": "window:w=64", "full": "full"}
CONFIG_KEY = "ppa_attention"


def split_spec(text: str) -> tuple[str, dict[str, str]]:
    """('ppa', {'p': '3/4', 'w': '64'}) from 'ppa:p=3/4,w=64': the family and the keys as typed."""
    family, _, rest = str(text).strip().partition(":")
    family = family.strip().lower()
    if family not in FAMILIES:
        raise PatternError(f"unknown attention pattern {text!r}; write one of {', '.join(EXAMPLES.values())}")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = (s.strip() for s in item.partition("="))
        if not equals or not value:
            raise PatternError(f"{item!r} in {text!r} is not key=value; write e.g. {EXAMPLES[family]}")
        if key not in FAMILIES[family]:
            allowed = ", ".join(FAMILIES[family]) or "no keys"
            raise PatternError(f"{family} takes {allowed}, not {key!r} (in {text!r})")
        if key in params:
            raise PatternError(f"{key} is given twice in {text!r}; give it once")
        params[key] = value
    return family, params


def build(family: str, params: dict) -> BlockPattern:
    """The pattern of `family` with `params` (strings or values), defaults filled in."""
    values = {key: params.get(key, default) for key, default in FAMILIES[family].items()}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        raise PatternError(f"{family} needs {', '.join(missing)}; write e.g. {EXAMPLES[family]}")
    if family == "ppa":
        return PowerPattern(values["p"], values["w"], values["sink"])
    if family == "window":
        return PowerPattern(Fraction(0), values["w"], values["sink"])
    if family == "full":
        return PowerPattern(Fraction(1), 0)
    return PowerAttention(values["block"], values["window"], values["sink"])


@lru_cache(maxsize=64)  # the transformers engine reads the spec from the config on every forward
def parse_spec(text: str) -> BlockPattern:
    return build(*split_spec(text))


def format_spec(pattern: BlockPattern) -> str:
    if isinstance(pattern, PowerAttention):
        return f"powerattention:block={pattern.block},window={pattern.window},sink={pattern.sink}"
    if not isinstance(pattern, PowerPattern):
        raise PatternError(f"{pattern!r} is not a pattern family ppa-eval knows")
    sink = f",sink={pattern.sink}" if pattern.sink else ""
    if pattern.power == 0:
        return f"window:w={pattern.window}{sink}"
    if pattern == PowerPattern(Fraction(1), 0):
        return "full"
    return f"ppa:p={format_power(pattern.power)},w={pattern.window}{sink}"


def family_of(pattern: BlockPattern) -> str:
    return split_spec(format_spec(pattern))[0]


def series(pattern: BlockPattern) -> str:
    """The curve a pattern belongs to when patterns are compared across costs: its family, and its
    sink when it has one ("ppa", "ppa+sink4", "window+sink4", "powerattention"); PPA's p = 1 end
    is full attention, the reference every series climbs towards."""
    family = family_of(pattern)
    if family == "powerattention" or not pattern.sink:
        return family
    return f"{family}+sink{pattern.sink}"


def sort_key(pattern: BlockPattern) -> tuple:
    """Patterns in a readable order: PPA by p, window, sink (its p = 0 and p = 1 ends included),
    then PowerAttention by block, window, sink."""
    if isinstance(pattern, PowerPattern):
        return (0, pattern.power, pattern.window, pattern.sink)
    return (1, Fraction(pattern.block), pattern.window, pattern.sink)


def pattern_from_config(config: dict) -> BlockPattern | None:
    """The pattern a model config names, or None when it names none.

    A config that names a pattern both ways must name the same one."""
    nested = config.get("ppa") if isinstance(config.get("ppa"), dict) else {}
    spec = config.get(CONFIG_KEY, nested.get("attention"))
    power = config.get("ppa_power", nested.get("power"))
    window = config.get("ppa_window", nested.get("window"))
    legacy = None if power is None else PowerPattern(parse_power(power), DEFAULT_WINDOW if window is None else window)
    if spec is None:
        return legacy
    pattern = parse_spec(spec)
    if legacy is not None and legacy != pattern:
        raise PatternError(f"the config says {CONFIG_KEY} {spec!r} but ppa_power/ppa_window say "
                           f"{format_spec(legacy)!r}; keep only {CONFIG_KEY}")
    return pattern


def config_entries(pattern: BlockPattern) -> dict:
    """The config keys that name `pattern`: the spec, and for sink-free PPA also the older keys."""
    entries = {CONFIG_KEY: format_spec(pattern)}
    if isinstance(pattern, PowerPattern) and pattern.sink == 0:
        entries |= {"ppa_power": format_power(pattern.power), "ppa_window": pattern.window}
    return entries
