"""One spec string for every pattern, in the CLI, model configs, manifests and run names:
`family:key=value,...`, e.g. `ppa:p=3/4,w=64`, `powerattention:block=64,window=1,sink=1`,
`window:w=64,sink=4`, `full`.

Each family declares its spellings (the spec names it is parsed from, their keys and defaults) and
its canonical form, `spec()` (ppa.py, power_attention.py, and installed families: families.py);
parse_spec(format_spec(x)) == x for every pattern. A spec is parsed where it enters (the command
line, a config, a manifest) and travels on as the pattern object.
"""

from __future__ import annotations

from functools import lru_cache

from ppa_eval.patterns.base import BlockPattern, PatternError, Spelling
from ppa_eval.patterns.families import families, spellings

CONFIG_KEY = "ppa_attention"  # the model config entry that names the pattern (config.json, hf_overrides)


def split_spec(text: str) -> tuple[Spelling, dict[str, str]]:
    """The spelling of 'ppa:p=3/4,w=64' and its keys as typed, {'p': '3/4', 'w': '64'}."""
    name, _, rest = str(text).strip().partition(":")
    spelling = spellings().get(name.strip().lower())
    if spelling is None:
        examples = ", ".join(s.example for s in spellings().values())
        raise PatternError(f"unknown attention pattern {text!r}; write one of {examples}")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = (s.strip() for s in item.partition("="))
        if not equals or not value:
            raise PatternError(f"{item!r} in {text!r} is not key=value; write e.g. {spelling.example}")
        if key not in spelling.keys:
            allowed = ", ".join(spelling.keys) or "no keys"
            raise PatternError(f"{spelling.name} takes {allowed}, not {key!r} (in {text!r})")
        if key in params:
            raise PatternError(f"{key} is given twice in {text!r}; give it once")
        params[key] = value
    return spelling, params


def build(spelling: Spelling, params: dict) -> BlockPattern:
    """The pattern `spelling` names with `params` (strings or values), defaults filled in."""
    values = {key: params.get(key, default) for key, default in spelling.keys.items()}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        raise PatternError(f"{spelling.name} needs {', '.join(missing)}; write e.g. {spelling.example}")
    return spelling.build(**values)


@lru_cache(maxsize=64)  # specs come back from configs and manifests: each is parsed once per process
def parse_spec(text: str) -> BlockPattern:
    return build(*split_spec(text))


def format_spec(pattern: BlockPattern) -> str:
    if type(pattern) not in families():
        raise PatternError(f"{pattern!r} is not a pattern family ppa-eval knows")
    return pattern.spec()


def sort_key(pattern: BlockPattern) -> tuple:
    """Patterns in a readable order: by family (PPA, its window and full ends included, then
    PowerAttention, then installed families), then by the family's own order."""
    return (families().index(type(pattern)), pattern.sort_key())
