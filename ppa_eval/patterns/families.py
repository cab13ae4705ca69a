"""The pattern families ppa-eval knows: the built-in ones, then those other packages install.

A package adds a family by naming its pattern class (a BlockPattern, see base.py) in the entry
point group `ppa_eval.patterns`, e.g. in its pyproject.toml:

    [project.entry-points."ppa_eval.patterns"]
    dilated = "ppa_eval_dilated:Dilated"

Its spellings are then specs like the built-in ones everywhere a spec is read (the CLI, model
configs, manifests, vLLM's workers). The entry points are loaded once per process, on first use.
docs/adding-a-pattern-family.md walks through one.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from ppa_eval.patterns.base import BlockPattern, PatternError, Spelling
from ppa_eval.patterns.power_attention import PowerAttention
from ppa_eval.patterns.ppa import PowerPattern
from ppa_eval.patterns.retention import PowerRetention

ENTRY_POINT_GROUP = "ppa_eval.patterns"
BUILT_IN = (PowerPattern, PowerAttention, PowerRetention)


@lru_cache(maxsize=None)
def families() -> tuple[type[BlockPattern], ...]:
    """The built-in families, then the installed ones in the order of their entry point names."""
    installed = []
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: entry.name):
        try:
            family = entry.load()
        except Exception as error:  # a broken plug-in is named, not a traceback from deep inside ours
            raise PatternError(f"the pattern family {entry.name} ({entry.value}) does not load: {error}; "
                               f"fix or uninstall the package that installs it") from error
        if not (isinstance(family, type) and issubclass(family, BlockPattern)):
            raise PatternError(f"the entry point {entry.name} = {entry.value} in group {ENTRY_POINT_GROUP} is not a "
                               "BlockPattern subclass; point it at the family's pattern class")
        installed.append(family)
    return BUILT_IN + tuple(installed)


@lru_cache(maxsize=None)
def spellings() -> dict[str, Spelling]:
    """Spec name -> its spelling, over every family."""
    found: dict[str, Spelling] = {}
    for family in families():
        for spelling in family.spellings:
            if spelling.name in found:
                raise PatternError(f"two pattern families call themselves {spelling.name!r}; uninstall one")
            found[spelling.name] = spelling
    return found
