"""A persistent child process that runs sympy work under a hard time and memory limit.

sympy can take minutes on `10^{10^{10^{10}}}`, and timeouts built on SIGALRM (lm-eval's,
math-verify's) only work in the main thread and fail silently elsewhere. So the work runs in
a child process: the parent sends one JSON request per line on its stdin, waits for the reply
line with a deadline, and on the deadline kills the child (by its pid) and starts a new one at
the next request. The child imports sympy once, so a request costs milliseconds, not the
second an import takes. Memory is capped with RLIMIT_AS, and running out counts as running
out of time: both are the hard limit.

The child is `python -m ppa_eval.grading.worker`, run by the parent's interpreter. It finds the
package where the parent found it: an installed package needs nothing; a package imported from
a directory that is not on every interpreter's path (a source checkout put on sys.path by a
test runner or `PYTHONPATH=.`) has that directory added to the child's PYTHONPATH, and nothing
else is.
"""

from __future__ import annotations

import json
import os
import select
import site
import subprocess
import sys
import time
from pathlib import Path

import ppa_eval

# The child takes about 0.2 GiB of address space with sympy and math-verify imported; no sane
# comparison needs more than a few MB beyond that.
MEMORY_LIMIT_BYTES = 2 << 30
# Importing sympy and math-verify takes about a second; allow for a loaded CI machine.
STARTUP_TIMEOUT_S = 120.0


class SandboxLimit(Exception):
    """The request ran past its deadline or the memory limit; the child was replaced."""


class WorkerStartError(RuntimeError):
    """The worker process did not start: a broken installation, not a property of an answer."""


class SandboxError(RuntimeError):
    """The operation raised in the child (a bug, not a property of the answer)."""


def _package_root() -> str | None:
    """The directory holding the ppa_eval package, if a fresh interpreter may not search it."""
    root = str(Path(ppa_eval.__file__).resolve().parents[1])
    default_paths = {str(Path(p).resolve()) for p in site.getsitepackages()}
    default_paths.add(str(Path(site.getusersitepackages()).resolve()))
    return None if root in default_paths else root


class Sandbox:
    """One child process, one request at a time. Not thread-safe: one per thread."""

    def __init__(self, memory_limit_bytes: int = MEMORY_LIMIT_BYTES) -> None:
        self._memory_limit_bytes = memory_limit_bytes
        self._process: subprocess.Popen | None = None
        self._buffer = b""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def run(self, operation: str, *args, timeout: float):
        """Result of `operation(*args)` in the child; SandboxLimit after `timeout` seconds."""
        if self._process is None:
            self._start()
        request = json.dumps({"operation": operation, "args": args}) + "\n"
        try:
            self._process.stdin.write(request.encode())
            self._process.stdin.flush()
        except BrokenPipeError:
            self._kill()
            raise SandboxLimit("the worker process had died") from None
        reply = self._read_line(time.monotonic() + timeout)
        if reply is None:
            self._kill()
            raise SandboxLimit(f"{operation} took longer than {timeout} s")
        message = json.loads(reply)
        if message.get("memory_error"):
            self._kill()  # the child may be in a bad state after a MemoryError
            raise SandboxLimit(f"{operation} ran out of memory")
        if "error" in message:
            raise SandboxError(message["error"])
        return message["result"]

    def close(self) -> None:
        """End the child: politely (end of its input), else by killing it."""
        if self._process is None:
            return
        self._process.stdin.close()
        try:
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._reap()

    def _start(self) -> None:
        env = dict(os.environ)
        package_root = _package_root()
        if package_root is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self._buffer = b""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ppa_eval.grading.worker", str(self._memory_limit_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        if self._read_line(time.monotonic() + STARTUP_TIMEOUT_S) != b"ready":
            self._kill()
            # Not a verdict on any answer: a broken environment must stop the grading.
            raise WorkerStartError(
                "the grading worker did not start; run `python -m ppa_eval.grading.worker "
                f"{self._memory_limit_bytes}` to see its error"
            )

    def _kill(self) -> None:
        self._process.kill()
        self._reap()

    def _reap(self) -> None:
        self._process.wait()
        self._process.stdin.close()
        self._process.stdout.close()
        self._process = None

    def _read_line(self, deadline: float) -> bytes | None:
        """The next line from the child, or None at the deadline or if the child died."""
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the child died, e.g. killed by the kernel
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line
