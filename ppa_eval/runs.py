"""The results of a run on disk: layout, atomic writes, resume.

    OUT/<run>/manifest.json            what was run: checkpoint + hash, p, w, engine, versions, settings
    OUT/<run>/<task>/samples.jsonl     one line per finished problem, appended batch by batch
    OUT/<run>/<task>/metrics.json      written last: its presence means the task is finished

Nothing half-written passes for finished: JSON files are written to a temporary file and renamed,
and samples.jsonl only grows by whole batches followed by fsync. A run killed mid-batch leaves at
most a partial last line, which resume drops; the batch is then recomputed whole, with the same
prompts in the same batch, so a resumed run ends with the same results as an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ppa_eval.jsonl import read_objects


class RunError(ValueError):
    """Results on disk that do not fit the run being asked for."""


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise _write_error(path, error) from None
    finally:
        Path(tmp).unlink(missing_ok=True)  # nothing left after a successful replace


def append_lines(path: Path, records: list[dict]) -> None:
    """Append records as JSON lines, durably; on any failure the file is cut back to where it was."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    with open(path, "ab", buffering=0) as handle:  # unbuffered: nothing is left to flush after a failure
        start = handle.tell()
        try:
            written = 0
            while written < len(data):
                written += handle.write(data[written:])
            os.fsync(handle.fileno())
        except BaseException as error:
            handle.truncate(start)  # do not leave a torn batch behind (disk full, Ctrl-C)
            if isinstance(error, OSError):
                raise _write_error(path, error) from None
            raise


def _write_error(path: Path, error: OSError) -> RunError:
    return RunError(f"could not write {path}: {error.strerror or error}; free some space and run the same command "
                    f"again: finished work is kept")


def read_samples(path: Path) -> list[dict]:
    """Finished samples, dropping a partial last line left by a killed run; any other bad line is an error."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    fix = "; delete the file to recompute this task"
    records = []
    for number, record in read_objects(path, RunError, fix, data=complete):
        if "doc_id" not in record:
            raise RunError(f"{path}, line {number}: not a sample (no doc_id){fix}")
        records.append(record)
    return records


def check_manifest(path: Path, manifest: dict, compared: tuple[str, ...]) -> None:
    """Write the manifest of a new run, or check that an existing run was made with the same settings."""
    if not path.exists():
        write_json_atomic(path, manifest)
        return
    try:
        existing = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunError(f"{path} is not valid JSON; delete the run directory to start it again") from None
    changed = [key for key in compared if existing.get(key) != manifest.get(key)]
    if changed:
        details = ", ".join(f"{k}: {existing.get(k)!r} -> {manifest.get(k)!r}" for k in changed)
        raise RunError(f"{path.parent} holds results made with other settings ({details}); use another --out or delete it")


@contextmanager
def exclusive(run_dir: Path):
    """Hold the run directory for one process: two writers appending to one samples file would mix."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"another ppa-eval is writing {run_dir}; wait for it to finish or use another --out") from None
        yield


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test."):
            pass
    except OSError as error:
        raise RunError(f"cannot write results to {directory}: {error.strerror}; choose another --out") from None
