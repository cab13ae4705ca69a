"""Where ppa-eval keeps what it computes once per machine: the converted embedded model, its
download, and checkpoint content hashes. $PPA_EVAL_CACHE, else $XDG_CACHE_HOME/ppa-eval, else
~/.cache/ppa-eval."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("PPA_EVAL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ppa-eval"
    )
    return Path(base)
