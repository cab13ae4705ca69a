"""The project's own error type: every mistake a user can make ends in a subclass of PPAEvalError.

The command line prints these as one line `error: ...` (exit status 2, or the subclass's own); any other exception is a
bug and keeps its traceback. Subclasses stay ValueErrors too, so library callers that caught
ValueError keep working.
"""


class PPAEvalError(ValueError):
    """Bad input or state the user can fix; the message names the problem and the fix."""

    exit_status = 2  # the command line's exit status for it
