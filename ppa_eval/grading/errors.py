"""The grading package's error type, in a module of its own so that every step can raise it."""


from ppa_eval.errors import PPAEvalError


class GradingError(PPAEvalError):
    """A user-facing problem with what was asked to be graded."""
