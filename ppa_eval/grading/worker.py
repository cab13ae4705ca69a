"""The sandbox's child process: answers one JSON request per line of stdin, on stdout.

Requests are {"operation": name, "args": [...]}; replies are {"result": ...}, {"error": text}
or {"memory_error": true}. It prints "ready" once its imports are done. Its one argument is
its memory limit in bytes. See `sandbox`.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys


def _claim_stdout():
    """Keep stdout for replies; send anything a library prints to stderr instead."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return replies


def serve(memory_limit_bytes: int) -> None:
    """Answer requests until stdin ends, within `memory_limit_bytes` of address space."""
    replies = _claim_stdout()
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    # Imported only now, so that nothing they print at import reaches the replies.
    from ppa_eval.grading.second_opinion import math_verify_verdict
    from ppa_eval.grading.symbolic import decide

    operations = {"decide": decide, "math_verify": math_verify_verdict}
    # math-verify warns once that its own (signal) timeouts are off: this process is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # The LaTeX parsers load lazily (about a second): load them now, outside any deadline.
    decide("1", "\\sqrt{1}")
    math_verify_verdict("$1$", "$1$")
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"result": operations[request["operation"]](*request["args"])}
        except MemoryError:
            reply = {"memory_error": True}
        except Exception as error:  # reported to the parent, which decides what it means
            reply = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
