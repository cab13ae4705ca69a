"""Reading JSON Lines files: one object per line, and errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path


def read_objects(path: Path, error: type[Exception], fix: str = "", data: bytes | None = None) -> list[tuple[int, dict]]:
    """(line number, object) for every non-empty line of `path` (or of `data`, its bytes).

    A line that is not a JSON object raises `error` with the file, the line and `fix` (a hint
    such as "; restore the file"). Lines are split at b"\\n" only: str.splitlines also breaks at
    U+2028 and the like, which JSON written with ensure_ascii=False carries raw inside strings.
    """
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise error(f"cannot read {path}: {err.strerror}{fix}") from None
    records = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise error(f"{path}, line {number}: not valid JSON ({getattr(err, 'msg', err)}){fix}") from None
        if not isinstance(record, dict):
            raise error(f"{path}, line {number}: not a JSON object{fix}")
        records.append((number, record))
    return records
