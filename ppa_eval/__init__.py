"""ppa-eval: evaluate checkpoints under power-based partial attention (PPA)."""

__version__ = "0.1.0"
