"""How a run generates and grades: every run setting, defined once.

A `Settings` field is one setting, and its `Setting` metadata says what the rest of ppa-eval needs
to know of it: the command line makes a flag of each (--<name with dashes>: its help, choices,
and how its text becomes a value), the run's manifest records each, the resume check compares
those a resumed run must match (`RESUMED`), and those that are table columns are written into
every task's metrics.json as well (`columns`). The pattern is a run's other half, passed beside
its settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields

from ppa_eval.engines import ENGINES
from ppa_eval.errors import PPAEvalError
from ppa_eval.long_context import DEFAULT_CONTEXT_LENGTHS
from ppa_eval.prompts import CHAT_TEMPLATE_MODES, THINKING_MODES
from ppa_eval.tasks import DATA_SOURCES, DEFAULT_PER_LENGTH, PAPER_TASKS, TASKS, parse_tasks


class SettingError(PPAEvalError):
    """A setting's value that no run can use."""


@dataclass(frozen=True)
class Setting:
    help: str | None = None          # the flag's help; None: no flag
    type: type = str                 # what argparse makes of the flag's text
    choices: tuple | None = None
    parse: Callable | None = None    # (argparse's value, flag) -> the setting's value; a SettingError if bad
    default_help: str | None = None  # what the default is, where the field's default does not say it
    manifest: bool = True            # recorded in manifest.json
    resumed: bool = True             # ... where a run holding samples resumes only with the same value
    column: bool = False             # written into each task's metrics.json: a column of the results tables


def _at_least_one(value: int, flag: str) -> int:
    if value < 1:
        raise SettingError(f"{flag} must be at least 1, got {value}; leave it out for the default")
    return value


def parse_context_lengths(text: str, flag: str = "--context-lengths") -> list[int]:
    """Comma-separated lengths in tokens, sorted, each once."""
    try:
        lengths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SettingError(f"{flag} takes whole numbers of tokens such as 1024,2048; got {text!r}") from None
    if not lengths or min(lengths) < 1:
        raise SettingError(f"{flag} takes positive numbers of tokens such as 1024,2048; got {text!r}")
    return sorted(set(lengths))


def _device(text: str, flag: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise SettingError(f"{flag} takes cpu or cuda (or cuda:N), got {text!r}")
    return text


def _setting(setting: Setting, default=None, factory: Callable | None = None):
    metadata = {"setting": setting}
    return field(default_factory=factory, metadata=metadata) if factory else field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """How a run generates and grades; each field's metadata is its `Setting`."""
    tasks: list[str] = _setting(Setting(
        f"comma-separated, from: {', '.join(TASKS)}", parse=lambda text, flag: [task.name for task in parse_tasks(text)],
        manifest=False),  # the manifest's `tasks` holds every task's hashes
        factory=lambda: list(PAPER_TASKS))
    limit: int | None = _setting(Setting(
        "first N problems of each task; long-context tasks: N problems per length", int, parse=_at_least_one,
        default_help=f"all; long context: {DEFAULT_PER_LENGTH}", resumed=False, column=True))  # may grow: runs.py
    context_lengths: list[int] | None = _setting(Setting(
        "prompt lengths in tokens of the long-context tasks, e.g. 1024,2048", parse=parse_context_lengths,
        default_help=",".join(map(str, DEFAULT_CONTEXT_LENGTHS))))
    max_new_tokens: int | None = _setting(Setting(
        "tokens generated at most per problem", int, parse=_at_least_one, default_help="the task's max_gen_toks"))
    chat_template: str = _setting(Setting(
        "auto: the checkpoint's chat template wraps each prompt; none: the prompt as is", choices=CHAT_TEMPLATE_MODES),
        "auto")
    thinking: str = _setting(Setting(
        "the chat template's thinking: off, on, or none (the template as it is)", choices=THINKING_MODES), "off")
    data_source: str = _setting(Setting(
        "the benchmark problems: vendored (in the package) or hub (Hugging Face)", choices=DATA_SOURCES), "vendored")
    seed: int = _setting(Setting("seeds torch and the generated long-context problems", int), 1234)
    engine: str = _setting(Setting("generation engine", choices=tuple(ENGINES)), "hf")
    device: str = _setting(Setting(
        "cpu or cuda", parse=_device, default_help="cuda when a GPU is visible", resumed=False), "cpu")
    dtype: str = _setting(Setting("auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16"), "auto")
    attn_kernel: str | None = _setting(Setting(
        "PPA attention of the transformers engine: ppa = Triton kernels, flex = flex attention, "
        "sdpa = exact boolean mask", choices=("ppa", "flex", "sdpa"),
        default_help="GPU: ppa, else flex, else sdpa, as the pattern and the model's head size allow; CPU: sdpa"))
    batch_size: int | None = _setting(Setting(
        "prompts per generate call, and per resume point", int, parse=_at_least_one,
        default_help=", ".join(f"{engine.batch_size} with {name}" for name, engine in ENGINES.items())))
    # vLLM's parallelism and memory (engines.vllm_engine.VLLMOptions, its own flags): they change no result
    engine_options: dict = _setting(Setting(resumed=False), factory=dict)


SETTINGS = {f.name: f.metadata["setting"] for f in fields(Settings)}
# What a resumed run must match (runs.check_manifest); `limit` has a rule of its own (a run may grow).
RESUMED = tuple(name for name, setting in SETTINGS.items() if setting.manifest and setting.resumed)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def default_help(name: str) -> str | None:
    """What a setting is when its flag is left out, for the flag's help."""
    described = Settings.__dataclass_fields__[name]
    default = described.default if described.default_factory is MISSING else described.default_factory()
    return SETTINGS[name].default_help or (",".join(map(str, default)) if isinstance(default, list) else
                                           None if default is None else str(default))


def parse_flags(values: dict) -> dict:
    """The settings among `values` (argparse's, by setting name; None: not given) as Settings takes them;
    a bad one is a SettingError that names its flag."""
    return {name: setting.parse(values[name], flag(name)) if setting.parse else values[name]
            for name, setting in SETTINGS.items() if setting.help is not None and values.get(name) is not None}


def manifest_entries(settings: Settings) -> dict:
    return {name: getattr(settings, name) for name, setting in SETTINGS.items() if setting.manifest}


def columns(settings: Settings) -> dict:
    """The settings every task's metrics.json records, so the results tables have them."""
    return {name: getattr(settings, name) for name, setting in SETTINGS.items() if setting.column}
