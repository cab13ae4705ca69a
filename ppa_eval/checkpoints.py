"""What a checkpoint is: a Hugging Face model directory (or a GGUF file) plus the attention pattern
it was trained with.

The convention: the checkpoint's config.json names the pattern as a spec string
(ppa_eval.patterns.spec), or, for PPA, in the older keys, which keep working (ppa_eval.compat):

    "ppa_attention": "ppa:p=3/4,w=64"           (any family: "powerattention:block=64,window=1,sink=1", ...)
or  "ppa_power": "3/4",  "ppa_window": 64
or  "ppa": {"power": "3/4", "window": 64}

`--attention SPEC`, or the PPA shorthand `--power` / `--window`, override; a flag that contradicts
the config is an error unless `--force`. A sweep may also read p from a directory name (p0.75,
ppa-0.875, p=0.5, swa, full) when the config has none; a name that says two things, or nothing, is
reported, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ppa_eval.cache import cache_root
from ppa_eval.compat import pattern_from_config
from ppa_eval.errors import PPAEvalError
from ppa_eval.patterns import (DEFAULT_WINDOW, BlockPattern, PatternError, PowerPattern, format_spec, parse_power,
                               parse_spec, parse_window, sort_key)


class CheckpointError(PPAEvalError):
    """A checkpoint that cannot be found, read, or told apart from its attention pattern."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    pattern: BlockPattern
    name: str  # names its results directory: the path under the sweep root, "/" as "_"


def check_readable(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; give a model directory with config.json or a .gguf file")
    if path.is_dir() and not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json; give a Hugging Face model directory or a .gguf file")
    if path.is_file() and path.suffix != ".gguf":
        raise CheckpointError(f"{path} is neither a model directory nor a .gguf file")
    try:
        if path.is_dir():
            (path / "config.json").read_bytes()
        else:
            with open(path, "rb") as handle:
                handle.read(4)
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}; check its permissions") from None


def config_pattern(path: Path) -> BlockPattern | None:
    """The pattern a checkpoint's config.json names, None where it names none (a GGUF file never does)."""
    if path.suffix == ".gguf":
        return None
    try:
        config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path / 'config.json'} is not valid JSON ({error.msg} at line {error.lineno})") from None
    try:
        return pattern_from_config(config)
    except PatternError as error:
        raise CheckpointError(f"{path / 'config.json'}: {error}") from None


def check_one_form(attention: str | None, power: str | None, window: str | None) -> None:
    """A pattern is named by a spec (--attention) or by the PPA shorthand (--power, --window), not both."""
    if attention is not None and (power is not None or window is not None):
        raise CheckpointError("give either --attention SPEC or the PPA shorthand --power P [--window W], not both")


def resolve_pattern(path: Path, power: str | None = None, window: str | None = None, force: bool = False,
                    attention: str | None = None) -> BlockPattern:
    """The pattern to evaluate `path` under: its config's, or the flags' (checked against it unless
    force). --power and --window are PPA shorthand and change only what they name: `--power` keeps a
    PPA config's window and sink, `--window` alone keeps its p."""
    check_one_form(attention, power, window)
    configured = config_pattern(path)
    flagged = None
    if attention is not None:
        flagged = parse_spec(attention)
    elif power is not None or window is not None:
        ppa = configured if isinstance(configured, PowerPattern) else None
        if power is None and ppa is None:
            raise CheckpointError(f"--window changes the window of a PPA checkpoint, and {path} names "
                                  f"{'no pattern' if configured is None else format_spec(configured)}; "
                                  "pass --power P too, or --attention SPEC")
        flagged = PowerPattern(parse_power(power) if power is not None else ppa.power,
                               parse_window(window) if window is not None else ppa.window if ppa else DEFAULT_WINDOW,
                               ppa.sink if ppa else 0)
    if flagged is not None and configured is not None and flagged != configured and not force:
        raise CheckpointError(
            f"the flags ask for {format_spec(flagged)}, which contradicts {format_spec(configured)} in {path}'s "
            "config; drop the flags, or add --force to evaluate the checkpoint under a pattern it was not trained with"
        )
    pattern = flagged or configured
    if pattern is None:
        raise CheckpointError(
            f"{path} has no PPA settings; pass --attention SPEC (e.g. ppa:p=3/4,w=64) or --power P (and --window W, "
            f'default {DEFAULT_WINDOW}), or add "ppa_attention" to its config.json'
        )
    return pattern


def parse_powers(text: str) -> list[Fraction]:
    """The powers of a --powers value, sorted and distinct: a list "0,1/2,1", ranges "start:stop:step"
    with both ends included ("0:1:1/8" is the paper's nine), or both ("0:1:1/8,15/16")."""
    powers = set()
    for part in (part.strip() for part in text.split(",")):
        if part.count(":") == 2:
            start, stop, step = (parse_power(value) for value in part.split(":"))
            if step == 0:
                raise CheckpointError(f"--powers range {part!r} has step 0; write e.g. 0:1:1/8")
            while start <= stop:
                powers.add(start)
                start += step
        elif part:
            powers.add(parse_power(part))
    if not powers:
        raise CheckpointError(f"--powers {text!r} names no power; write e.g. 0,1/2,1 or 0:1:1/8")
    return sorted(powers)


_NAME_POWER = [
    (re.compile(r"(?:^|[^a-z0-9])(?:ppa|p)[-_=]?(\d+(?:\.\d+)?)(?![0-9.]|[-_]\d)"), None),
    (re.compile(r"(?:^|[^a-z])(?:swa|sliding[-_]?window)(?:$|[^a-z])"), Fraction(0)),
    (re.compile(r"(?:^|[^a-z])full(?:[-_]?attention)?(?:$|[^a-z])"), Fraction(1)),
]


def power_from_name(name: str) -> Fraction | None:
    """p read from a directory name, None if it names none; CheckpointError if it names several."""
    found = set()
    for pattern, fixed in _NAME_POWER:
        for match in pattern.finditer(name.lower()):
            if fixed is not None:
                found.add(fixed)
            else:
                try:
                    found.add(parse_power(match.group(1)))
                except ValueError:
                    pass
    if len(found) > 1:
        raise CheckpointError(f"directory name {name!r} names several powers ({', '.join(map(str, sorted(found)))})")
    return found.pop() if found else None


def discover(root: Path, window: str | None = None) -> tuple[list[Checkpoint], list[str]]:
    """Checkpoints under `root` in order of pattern (PPA by p), and one line for each one that was skipped and why."""
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a directory; ppa-eval sweep takes a directory of checkpoints")
    candidates = sorted({p.parent for p in root.rglob("config.json")} | set(root.rglob("*.gguf")))
    found, skipped = [], []
    for path in candidates:
        try:
            configured = config_pattern(path)
            name_power = power_from_name(path.stem if path.suffix == ".gguf" else path.name)
            if isinstance(configured, PowerPattern) and name_power is not None and configured.power != name_power:
                raise CheckpointError(f"its config says p={configured.power} but its name says p={name_power}")
            if configured is None and name_power is None:
                raise CheckpointError("no ppa_attention or ppa_power in its config and no p in its name")
            pattern = resolve_pattern(path, None if configured else str(name_power), window)
        except CheckpointError as error:
            skipped.append(f"{path}: {error}")
            continue
        name = path.relative_to(root).as_posix().replace("/", "_") if path != root else checkpoint_name(path)
        found.append(Checkpoint(path, pattern, name))
    by_name: dict[str, list[Path]] = {}
    for checkpoint in found:
        by_name.setdefault(checkpoint.name, []).append(checkpoint.path)
    for name, paths in by_name.items():
        if len(paths) > 1:  # e.g. a/b_final and a_b/final: their results would share one directory
            raise CheckpointError(f"checkpoints {', '.join(map(str, paths))} would share the run name {name!r}; "
                                  "rename one of the directories")
    found.sort(key=lambda c: (sort_key(c.pattern), c.name))
    return found, skipped


def checkpoint_name(path: Path) -> str:
    """The name a single checkpoint's results go under: its file stem or directory name."""
    return path.stem if path.suffix == ".gguf" else path.resolve().name


def content_sha256(path: Path) -> str:
    """sha256 over the files of a checkpoint (names and bytes), so results name exactly what was run.

    Hashing 18 GB takes minutes, so the digest is cached by the files' paths, sizes and
    modification times (in the ppa-eval cache): any change to a file hashes it again.
    """
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = [[str(file.resolve()), file.stat().st_size, file.stat().st_mtime_ns] for file in files]
    cache = cache_root() / "hashes" / (hashlib.sha256(json.dumps(stamp).encode()).hexdigest() + ".sha256")
    if cache.is_file():
        return cache.read_text().strip()
    digest = _hash_files(path, files)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(digest + "\n")
    return digest


def _hash_files(path: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(path if path.is_dir() else path.parent).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()
