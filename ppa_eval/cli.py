"""The `ppa-eval` command line: pattern, evaluate, sweep, finetune, reproduce, table, grade.

Every user mistake ends as one line `error: ...` and exit status 2: the modules raise the
project's own error type (ppa_eval.errors.PPAEvalError) with a message that names the problem and
the fix, and main() prints it. Any other exception is a bug and keeps its traceback;
PPA_EVAL_DEBUG=1 shows the traceback of a user error too, causes included.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from ppa_eval import __version__
from ppa_eval.errors import PPAEvalError
from ppa_eval.tasks import DEFAULT_PER_LENGTH, EMBEDDED_TASKS, TASKS, gradable_tasks, load_task


class UsageError(PPAEvalError):
    """A flag value or combination that the command line cannot run."""


# The command holds a few arrays of L numbers: about 2 GB at this length, more than a laptop spares beyond it.
MAX_PATTERN_LENGTH = 1 << 24


def _pattern(args) -> None:
    from ppa_eval.patterns import (DEFAULT_WINDOW, dense_pairs, format_spec, keys_per_query, layers_to_last,
                                   match_cost, pairs, parse_spec)
    from ppa_eval.checkpoints import check_one_form
    from ppa_eval.patterns.receptive_field import summarize

    length = args.length
    if not 1 <= length <= MAX_PATTERN_LENGTH:
        raise UsageError(f"--length must be between 1 and {MAX_PATTERN_LENGTH:,}, got {length:,}")
    if args.layers is not None and args.layers < 1:
        raise UsageError(f"--layers must be at least 1, got {args.layers}")
    check_one_form(args.attention, args.power, args.window)
    if args.attention is None and args.power is None:
        raise UsageError("give --attention SPEC (e.g. ppa:p=3/4,w=64 or powerattention:block=64,window=1,sink=1) "
                         "or --power P")
    text = args.attention or f"ppa:p={args.power},w={DEFAULT_WINDOW if args.window is None else args.window}"
    matched = None
    if args.match_cost:
        other = parse_spec(args.match_cost)
        matched = {"spec": format_spec(other), "pairs": pairs(other, length)}
        pattern = match_cost(text, matched["pairs"], length)
    else:
        pattern = parse_spec(text)
    positions = pattern.relative_positions(length)
    per_query = keys_per_query(pattern, length)
    attended, dense = int(per_query.sum()), dense_pairs(length)
    summary = {
        "spec": format_spec(pattern),
        "length": length,
        "relative_positions": positions.tolist(),
        "keys_per_query": {"min": int(per_query.min()), "mean": float(per_query.mean()), "max": int(per_query.max())},
        "pairs": attended,
        "dense_pairs": dense,
        "fraction_of_dense": attended / dense,
    }
    if matched:
        summary["matched"] = matched
    layers = None
    if args.layers is not None:
        layers = layers_to_last(pattern, length)
        summary["receptive_field"] = summarize(layers, args.layers)
    if args.plot:
        from ppa_eval.patterns.plot import plot_pattern

        plot_pattern(pattern, length, args.plot, args.plot_size, layers, args.layers)
    if args.json:
        print(json.dumps(summary))
        return
    shown = positions.tolist()
    listing = ", ".join(map(str, shown)) if len(shown) <= 40 else (
        ", ".join(map(str, shown[:20])) + f", ... ({len(shown) - 30} more) ..., " + ", ".join(map(str, shown[-10:])))
    print(f"{summary['spec']}, length {length}")
    if matched:
        print(f"chosen to match the cost of {matched['spec']}: {matched['pairs']:,} pairs")
    print(f"relative positions j attended by the query at position {length} ({len(shown)} keys): {listing}")
    print(f"keys per query over positions 1..{length}: min {summary['keys_per_query']['min']}, "
          f"mean {summary['keys_per_query']['mean']:.1f}, max {summary['keys_per_query']['max']}")
    print(f"attended pairs: {attended:,} of {dense:,} causal pairs ({100 * attended / dense:.2f}%)")
    if layers is not None:
        field = summary["receptive_field"]
        needed = field["layers_to_cover_all"]
        print(f"receptive field of position {length}: {100 * field['coverage']:.2f}% of positions reach it within "
              f"{args.layers} layers; " + (f"all within {needed} layers" if needed is not None else
                                          f"{field['unreachable_positions']:,} positions never do"))
    if args.plot:
        print(f"mask plot written to {args.plot}")


def _cost(args) -> None:
    """Attention FLOPs per generated token and cache bytes per sequence of one model shape under
    each pattern (patterns/cost.py; retention's formula: patterns/retention.py)."""
    from ppa_eval.checkpoints import config_pattern
    from ppa_eval.engines.model_files import attention_shape
    from ppa_eval.patterns import parse_spec
    from ppa_eval.patterns.cost import VALUE_BYTES, AttentionShape, cache_bytes, decode_flops

    if (args.checkpoint is None) == (args.shape is None):
        raise UsageError("give a checkpoint (its attention shape) or --shape LAYERS,HEADS,KV_HEADS,HEAD_DIM, not both")
    lengths = [int(length) for length in args.lengths.split(",")]
    patterns = [parse_spec(spec) for spec in (args.attention or ["full"])]
    if args.shape is not None:
        try:
            shape = AttentionShape(*map(int, args.shape.split(",")), value_bytes=VALUE_BYTES[args.dtype])
        except (TypeError, ValueError):
            raise UsageError(f"--shape {args.shape!r}: write LAYERS,HEADS,KV_HEADS,HEAD_DIM, e.g. 40,40,8,128") from None
    else:
        path = Path(args.checkpoint)
        shape = attention_shape(path, args.dtype)
        own = config_pattern(path)
        patterns += [own] if own else []
    rows = [{"attention": pattern.spec(), "length": length, "attention_flops_per_token": decode_flops(pattern, shape, length),
             "cache_bytes": cache_bytes(pattern, shape, length)} for pattern in patterns for length in lengths]
    if args.json:
        print(json.dumps({"shape": vars(shape), "rows": rows}, indent=2))
        return
    print(f"| attention | L | MFLOP/token | cache MiB |  ({shape.layers} layers, {shape.heads}/{shape.kv_heads} heads "
          f"of {shape.head_dim}, {shape.value_bytes}-byte values)\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['attention']} | {row['length']:,} | {row['attention_flops_per_token'] / 1e6:,.1f} | "
              f"{row['cache_bytes'] / 2**20:,.1f} |")


def _check_evaluation_flags(args) -> None:
    """The checks that need no model and no heavy import, made first so that a mistake costs no wait."""
    from ppa_eval.engines import EngineError
    from ppa_eval.settings import parse_flags

    parse_flags(vars(args))
    vllm_options = _vllm_options(args)
    if args.engine != "vllm" and vllm_options:
        raise EngineError(f"--{next(iter(vllm_options)).replace('_', '-')} is a vLLM setting; add --engine vllm")
    if args.engine == "vllm" and args.attn_kernel:
        raise EngineError("--attn-kernel picks the transformers engine's attention; the vLLM engine always "
                         "attends through the PPA plug-in, so drop the flag")


def _device(requested: str | None) -> str:
    """--device checked against this torch: a GPU it cannot see fails here, before anything is written."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {requested}, but this torch ({torch.__version__}) sees no CUDA GPU; "
                         "pass --device cpu or leave --device out")
    return requested


def _evaluation_settings(args):
    from ppa_eval.settings import Settings, parse_flags

    if args.preset == "lm-eval":
        from ppa_eval.lm_eval_preset import preset_options

        for option, value in preset_options().items():  # what the user set stays
            if getattr(args, option) is None:
                setattr(args, option, value)
    if args.engine == "vllm":
        from ppa_eval.engines.vllm_engine import require_vllm

        require_vllm()  # before anything is loaded or written
    return Settings(**{**parse_flags(vars(args)), "device": _device(args.device), "engine_options": _vllm_options(args)})


def _vllm_options(args) -> dict:
    return {name: getattr(args, name) for name in VLLM_FLAGS if getattr(args, name) not in (None, False)}


# `finetune`'s recipe flags and the smallest value each takes (the learning rate: any positive one)
RECIPE_FLAGS = {"per_length": 1, "plain": 0, "epochs": 1, "batch_tokens": 1, "lr": 0, "warmup": 0, "save_every": 1}
VLLM_FLAGS = ("tensor_parallel_size", "pipeline_parallel_size", "distributed_executor_backend", "data_parallel_size",
              "gpu_memory_utilization", "kv_cache_gib", "max_num_seqs", "max_model_len", "enforce_eager")

# The embedded SmolLM2-135M solves no MATH500 or GSM8K problem at any p, but it retrieves a pass key
# from 1k tokens under full attention and fails under a 64-token window: its default run is the one
# in which p visibly matters, short enough for 2 CPU cores.
EMBEDDED_DEFAULTS = {"tasks": ",".join(EMBEDDED_TASKS), "context_lengths": "1024", "limit": DEFAULT_PER_LENGTH}


def _embedded(args) -> Path:
    """The embedded model's checkpoint, with its evaluation defaults filled into what the user left unset."""
    from ppa_eval.engines.embedded import embedded_checkpoint

    for flag, value in EMBEDDED_DEFAULTS.items():
        if hasattr(args, flag) and getattr(args, flag) is None:  # `finetune` has no evaluation flags
            setattr(args, flag, value)
    return embedded_checkpoint()


def _evaluate(args) -> None:
    _check_evaluation_flags(args)
    from ppa_eval.checkpoints import check_readable, checkpoint_name, resolve_pattern
    from ppa_eval.engines import make_engine
    from ppa_eval.engines.embedded import EMBEDDED_NAME
    from ppa_eval.runs import check_writable

    if args.checkpoint is None:
        if args.power is None and args.attention is None:
            raise UsageError("the embedded model has no attention pattern of its own; pass --power P (e.g. --power 0.75) "
                             "or --attention SPEC (e.g. powerattention:block=64,window=1,sink=1)")
        path, name = _embedded(args), EMBEDDED_NAME
    else:
        path = Path(args.checkpoint)
        check_readable(path)
        name = args.name or checkpoint_name(path)
    pattern = resolve_pattern(path, args.power, args.window, args.force, args.attention)
    settings = _evaluation_settings(args)  # imports torch and transformers: after the checks above
    out = Path(args.out)
    check_writable(out)
    from ppa_eval.evaluate import evaluate

    run_dir = evaluate(path, name, pattern, settings, out, make_engine)
    from ppa_eval.report import collect, render_tables

    print(render_tables(collect(run_dir), "md", perplexity=collect(run_dir, "scored")))
    print(f"results in {run_dir}")


def _sweep(args) -> None:
    _check_evaluation_flags(args)
    from ppa_eval.engines import make_engine
    from ppa_eval.patterns import format_spec
    from ppa_eval.runs import check_writable

    checkpoints = _shard(_sweep_checkpoints(args), args.shard)
    out = Path(args.out)
    check_writable(out)
    from ppa_eval.evaluate import evaluate  # torch and transformers: after the checks above
    from ppa_eval.report import write_report
    from ppa_eval.runs import RunLocked

    print("checkpoints and their patterns, in order:\n" + "\n".join(f"  {format_spec(c.pattern)}  {c.path}"
                                                                   for c in checkpoints))
    gpus = [g.strip() for g in (args.gpus or "").split(",") if g.strip()]
    if gpus:
        failed = _sweep_on_gpus(args, checkpoints, gpus, out)
    else:
        settings = _evaluation_settings(args)
        failed = []
        for checkpoint in checkpoints:
            try:
                evaluate(checkpoint.path, checkpoint.name, checkpoint.pattern, settings, out, make_engine)
            except RunLocked:  # another sweep on this directory has it: that one finishes it
                print(f"skipped {checkpoint.path}: another ppa-eval is evaluating it", file=sys.stderr)
            except PPAEvalError as error:  # one bad checkpoint does not keep the others from running
                print(f"\ncheckpoint {checkpoint.path} failed: {error}", file=sys.stderr)
                failed.append(checkpoint)
    if len(failed) < len(checkpoints):
        tables, written = write_report(out)
        print(tables)
        print(f"results in {out} ({len(checkpoints) - len(failed)} runs); tables and plots: "
              f"{', '.join(p.name for p in written)}")
    if failed:
        names = ", ".join(str(checkpoint.path) for checkpoint in failed)
        raise UsageError(f"{len(failed)} of {len(checkpoints)} checkpoints failed ({names}, see above); fix them and "
                         "rerun the sweep: finished runs are kept")


def _shard(checkpoints: list, shard: str | None) -> list:
    """--shard I/N: the checkpoints whose runs fall in shard I of N (runs.shard_of), for job arrays."""
    if shard is None:
        return checkpoints
    from ppa_eval.runs import run_name, shard_of

    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise UsageError(f"--shard takes I/N, e.g. 0/4 (this worker's index from 0, and the number of workers); "
                         f"got {shard!r}") from None
    if not 0 <= index < count:
        raise UsageError(f"--shard {shard}: I must be from 0 to N - 1")
    return [c for c in checkpoints if shard_of(run_name(c.name, c.pattern), count) == index]


def _sweep_checkpoints(args) -> list:
    """What a sweep evaluates, in order of pattern: every checkpoint under a directory, each under its
    own pattern; or, with --powers and/or --attention, one checkpoint (default: the embedded model)
    under each of those patterns, without training."""
    from ppa_eval.checkpoints import Checkpoint, discover

    if args.powers is None and not args.attention:
        if args.target is None:
            raise UsageError("ppa-eval sweep takes a directory of checkpoints, or --powers P1,P2,... and/or "
                             "--attention SPEC (repeatable) to evaluate one checkpoint (default: the embedded model) "
                             "under each pattern")
        checkpoints, skipped = discover(Path(args.target), args.window)
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
        if not checkpoints and skipped:
            raise UsageError(f"no checkpoint with a PPA power under {args.target}; see the skipped ones above")
        if not checkpoints:
            raise UsageError(f"no checkpoint under {args.target} (a directory with config.json, or a .gguf file); "
                             "give the directory that holds them")
        return checkpoints
    path, name = _one_checkpoint(args)
    return [Checkpoint(path, pattern, name) for pattern in _patterns(args, path)]


def _one_checkpoint(args) -> tuple[Path, str]:
    """(path, name) of the one checkpoint a command takes as `target`: default, the embedded model."""
    from ppa_eval.checkpoints import check_readable, checkpoint_name
    from ppa_eval.engines.embedded import EMBEDDED_NAME

    if args.target is None:
        return _embedded(args), EMBEDDED_NAME
    path = Path(args.target)
    check_readable(path)
    return path, checkpoint_name(path)


def _patterns(args, path: Path) -> list:
    """The patterns of --powers and --attention, in order, each over what `path`'s config says."""
    from ppa_eval.checkpoints import parse_powers, resolve_pattern
    from ppa_eval.patterns import sort_key

    powers = parse_powers(args.powers) if args.powers is not None else []
    patterns = [resolve_pattern(path, str(power), args.window, force=True) for power in powers]
    patterns += [resolve_pattern(path, force=True, attention=spec) for spec in args.attention or []]
    return sorted(set(patterns), key=sort_key)


def _finetune(args) -> None:
    from ppa_eval.finetune import Recipe, finetune
    from ppa_eval.patterns import format_spec
    from ppa_eval.runs import check_writable
    from ppa_eval.settings import parse_context_lengths
    from ppa_eval.training_data import DataRecipe

    if args.powers is None and not args.attention:
        raise UsageError("name the patterns to fine-tune under: --powers P1,P2,... (e.g. 0:1:1/8,15/16) and/or "
                         "--attention SPEC (repeatable)")
    given = {flag: getattr(args, flag) for flag in RECIPE_FLAGS if getattr(args, flag) is not None}
    for flag, value in given.items():
        if not value > 0 if flag == "lr" else value < RECIPE_FLAGS[flag]:
            bound = "positive" if flag == "lr" else f"at least {RECIPE_FLAGS[flag]}"
            raise UsageError(f"--{flag.replace('_', '-')} must be {bound}, got {value}")
    device = _device(args.device)
    path, name = _one_checkpoint(args)
    patterns = _patterns(args, path)
    out = Path(args.out)
    check_writable(out)
    data = {flag: given.pop(flag) for flag in ("per_length", "plain") if flag in given}
    if args.train_lengths is not None:
        data["lengths"] = tuple(parse_context_lengths(args.train_lengths, "--train-lengths"))
    recipe = Recipe(data=DataRecipe(**data, seed=args.seed), seed=args.seed, **given)
    print(f"fine-tuning {path} under {', '.join(map(format_spec, patterns))}")
    for checkpoint in finetune(path, name, patterns, recipe, out, device, args.attn_kernel):
        print(f"  {checkpoint}")
    print(f"evaluate them all with: ppa-eval sweep {out}")


def _sweep_on_gpus(args, checkpoints, gpus: list[str], out: Path) -> list:
    """One checkpoint per GPU at a time (one GPU: one after the other on it): each `ppa-eval evaluate`
    runs in its own process, under the same run name a sequential sweep gives it. Returns the
    checkpoints that failed (their processes said why)."""
    from ppa_eval.runs import RunLocked

    queue = list(checkpoints)
    running: dict[str, tuple[subprocess.Popen, object]] = {}
    failed = []
    while queue or running:
        for gpu in gpus:
            if gpu not in running and queue:
                checkpoint = queue.pop(0)
                process = subprocess.Popen(evaluate_command(args, checkpoint, out),
                                           env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu})
                running[gpu] = (process, checkpoint)
        time.sleep(1)
        for gpu, (process, checkpoint) in list(running.items()):
            if process.poll() is not None:
                if process.returncode not in (0, RunLocked.exit_status):  # locked: another sweep evaluates it
                    failed.append(checkpoint)
                del running[gpu]
    return failed


def evaluate_command(args, checkpoint, out: Path) -> list[str]:
    """The `ppa-eval evaluate` of one sweep checkpoint on a GPU: the same run name, pattern and settings
    a sequential sweep uses, so either kind of sweep resumes the other's runs. --force: under --powers
    or --attention the pattern is the sweep's, not the checkpoint's."""
    from ppa_eval.patterns import format_spec

    return [sys.executable, "-m", "ppa_eval.cli", "evaluate", str(checkpoint.path), "--name", checkpoint.name, "--force",
            "--attention", format_spec(checkpoint.pattern), *_shared_flags(args), "--device", "cuda", "--out", str(out)]


def _shared_flags(args) -> list[str]:
    """The evaluation flags the user gave, as they gave them."""
    from ppa_eval.settings import SETTINGS

    flags = []
    for name in (*(name for name, setting in SETTINGS.items() if setting.help), "preset", *VLLM_FLAGS):
        value = getattr(args, name)
        if value is True:
            flags.append(f"--{name.replace('_', '-')}")
        elif value not in (None, False):
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def _reproduce(args) -> None:
    from ppa_eval.report import collect, plot_s_curve, render_paper_table, render_reproduction

    if args.paper:
        print(render_paper_table(args.format))
        return
    results = Path(args.results_dir)
    df = collect(results)
    for note in df.attrs.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    print(render_reproduction(df, args.format, substitutes=(args.gsm8k_task,)))
    plot = Path(args.plot) if args.plot else results / "s_curve.png"
    plot_s_curve(df, plot, substitutes=(args.gsm8k_task,))
    print(f"S-curve plot written to {plot}")


def _table(args) -> None:
    from ppa_eval.report import collect, render_tables

    df, perplexity = collect(Path(args.results_dir)), collect(Path(args.results_dir), "scored")
    for note in df.attrs["notes"] + perplexity.attrs["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(render_tables(df, args.format, args.metric, perplexity))


def _report(args) -> None:
    from ppa_eval.report import write_report

    tables, written = write_report(Path(args.results_dir), args.baseline)
    print(tables)
    print("written: " + ", ".join(str(path) for path in written))


def _grade(args) -> None:
    summary = load_task(args.task).grader.grade_file(Path(args.input), Path(args.out) if args.out else None)
    print(json.dumps(summary), file=sys.stderr)


def _lm_eval(args) -> None:
    from ppa_eval.lm_eval_model import run_lm_eval

    run_lm_eval(args.lm_eval_args)


ATTENTION_HELP = ("pattern spec: ppa:p=3/4,w=64[,sink=S], powerattention:block=B,window=W,sink=S (B = 1: token "
                  "level), window:w=W[,sink=S] or full; see ppa-eval pattern")


def _add_evaluation_flags(parser: argparse.ArgumentParser) -> None:
    from ppa_eval.settings import SETTINGS, default_help, flag

    parser.add_argument("--window", help="PPA shorthand: window w in tokens (default: the checkpoint's, else 64)")
    parser.add_argument("--out", default="runs", help="results directory (default ./runs)")
    parser.add_argument("--preset", choices=["lm-eval"],
                        help="lm-eval: the settings of a stock `lm_eval --tasks gsm8k,minerva_math500` run (no chat "
                             "template, 256 new tokens), to check p = 1 against it; flags given as well win")
    for name, setting in SETTINGS.items():
        if setting.help is None:
            continue
        defaults = [default_help(name)] + ([f"the embedded model: {EMBEDDED_DEFAULTS[name]}"]
                                           if name in EMBEDDED_DEFAULTS else [])
        parser.add_argument(flag(name), type=setting.type, choices=setting.choices,
                            help=f"{setting.help} (default: {'; '.join(filter(None, defaults))})")
    vllm = parser.add_argument_group("vLLM engine (--engine vllm)")
    vllm.add_argument("--tensor-parallel-size", type=int, help="GPUs per model (default 1)")
    vllm.add_argument("--pipeline-parallel-size", type=int,
                      help="pipeline stages, the model's layers split over GPUs or nodes (default 1)")
    vllm.add_argument("--distributed-executor-backend", choices=["mp", "ray"],
                      help="how vLLM starts its workers: mp (one node) or ray (several nodes: start a Ray cluster "
                           "first); default: vLLM's choice")
    vllm.add_argument("--data-parallel-size", type=int,
                      help="independent model replicas, each on its own GPUs (CPU: its own cores); default 1")
    vllm.add_argument("--gpu-memory-utilization", type=float,
                      help="share of GPU memory vLLM may take (default 0.9); on CPU, the share of the NUMA node's RAM")
    vllm.add_argument("--kv-cache-gib", type=float,
                      help="KV-cache size in GiB instead of a memory share (CPU default: 1 GiB)")
    vllm.add_argument("--max-num-seqs", type=int, help="sequences decoded at once (default: vLLM's)")
    vllm.add_argument("--max-model-len", type=int, help="longest prompt + answer in tokens (default: the model's)")
    vllm.add_argument("--enforce-eager", action="store_true", help="no torch.compile or CUDA graphs: faster start, slower steps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppa-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("pattern", help="show which keys a query attends under an attention pattern")
    p.add_argument("--attention", help=ATTENTION_HELP)
    p.add_argument("--power", help="PPA shorthand: p in [0, 1], a decimal (0.75) or a fraction (1/3)")
    p.add_argument("--window", help="PPA shorthand: window w in tokens (default 64)")
    p.add_argument("--length", type=int, required=True, help="sequence length L")
    p.add_argument("--match-cost", metavar="SPEC",
                   help="choose the free parameter of --attention (ppa's p, window's w, powerattention's window; "
                        "leave it out of --attention) so its attended pairs at L equal SPEC's")
    p.add_argument("--layers", type=int, help="report the receptive field of the last position after N layers")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", help="draw the mask (queries x keys), and with --layers the receptive field, into this PNG")
    p.add_argument("--plot-size", type=int, default=128, help="largest L drawn in the mask plot (default 128)")
    p.set_defaults(run=_pattern)

    p = commands.add_parser("cost", help="attention FLOPs per generated token and cache bytes per sequence of a "
                                         "model under patterns, power retention included")
    p.add_argument("checkpoint", nargs="?", help="model directory or .gguf file: its attention shape, and its own "
                                                 "pattern beside --attention")
    p.add_argument("--shape", help="LAYERS,HEADS,KV_HEADS,HEAD_DIM instead of a checkpoint (Brumby-14B: 40,40,8,128)")
    p.add_argument("--attention", action="append", help=ATTENTION_HELP + " or retention:degree=2,chunk=C; "
                   "repeat for several (default: full)")
    p.add_argument("--lengths", default="1024,4096,32768", help="context lengths L (default 1024,4096,32768)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                   help="the cached values' dtype (default bfloat16)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_cost)

    p = commands.add_parser("evaluate", help="evaluate one checkpoint (default: the embedded model) under its "
                                             "attention pattern")
    p.add_argument("checkpoint", nargs="?", help="model directory or .gguf file (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--attention", help=ATTENTION_HELP + " (default: the checkpoint's ppa_attention)")
    p.add_argument("--power", help="PPA shorthand: p in [0, 1] (default: the checkpoint's)")
    p.add_argument("--force", action="store_true",
                   help="allow --attention/--power/--window that contradict the checkpoint's config")
    p.add_argument("--name", help=argparse.SUPPRESS)  # the run name a sweep gave this checkpoint
    _add_evaluation_flags(p)
    p.set_defaults(run=_evaluate)

    p = commands.add_parser("sweep", help="evaluate every checkpoint under a directory, or one checkpoint under "
                                          "several patterns (--powers, --attention), in order (resumable)")
    p.add_argument("target", nargs="?", help="a directory of checkpoints; with --powers or --attention one checkpoint "
                                             "(default: the embedded model)")
    p.add_argument("--attention", action="append", metavar="SPEC",
                   help="evaluate TARGET under this pattern too; repeat for several. " + ATTENTION_HELP)
    p.add_argument("--powers", help="evaluate TARGET under each p, training-free: 0,1/2,1 or a range "
                                    "start:stop:step such as 0:1:1/8 (both ends included), or both: 0:1:1/8,15/16")
    p.add_argument("--gpus", help="comma-separated GPU ids: one checkpoint per GPU at a time")
    p.add_argument("--shard", metavar="I/N",
                   help="evaluate only shard I (0 to N-1) of N, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; "
                        "sweeps on one --out share its runs safely with or without it")
    _add_evaluation_flags(p)
    p.set_defaults(run=_sweep)

    p = commands.add_parser("finetune", help="fine-tune one checkpoint (default: the embedded model) once per pattern, "
                                             "under exactly the mask evaluation applies, into a directory for sweep")
    p.add_argument("target", nargs="?", help="model directory or .gguf file (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--powers", help="fine-tune under each p: 0,1/2,1 or a range such as 0:1:1/8 (both ends included)")
    p.add_argument("--attention", action="append", metavar="SPEC", help="fine-tune under this pattern too; repeatable. "
                                                                       + ATTENTION_HELP)
    p.add_argument("--window", help="PPA shorthand: window w in tokens for --powers (default 64)")
    p.add_argument("--out", default="finetuned", help="output directory, one checkpoint per pattern (default ./finetuned)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when a GPU is visible)")
    p.add_argument("--attn-kernel", default="sdpa", choices=["sdpa", "flex"],
                   help="sdpa = exact boolean mask (default), flex = flex attention; both are evaluation's own masks")
    recipe = p.add_argument_group("recipe (the same for every pattern; defaults: ppa_eval.finetune.Recipe)")
    recipe.add_argument("--train-lengths", help="context lengths of the retrieval problems (default 1024,2048,4096)")
    recipe.add_argument("--per-length", type=int, help="retrieval problems per task and length (default 64)")
    recipe.add_argument("--plain", type=int, help="GSM8K train solutions mixed in (default 1000)")
    recipe.add_argument("--epochs", type=int, help="passes over the data (default 1)")
    recipe.add_argument("--batch-tokens", type=int, help="padded tokens per step (default 32768)")
    recipe.add_argument("--lr", type=float, help="AdamW peak learning rate (default 1e-4)")
    recipe.add_argument("--warmup", type=int, help="warm-up steps (default 10)")
    recipe.add_argument("--save-every", type=int, help="steps between resume points (default 20)")
    recipe.add_argument("--seed", type=int, default=0, help="training problems and batch order (default 0)")
    p.set_defaults(run=_finetune)

    p = commands.add_parser("reproduce", help="the paper's Table 1 and S-curve beside ours")
    p.add_argument("results_dir", nargs="?", default="runs", help="results directory (default ./runs)")
    p.add_argument("--paper", action="store_true", help="print the paper's own Table 1")
    p.add_argument("--format", default="md", choices=["md", "csv", "latex"])
    p.add_argument("--plot", help="S-curve PNG path (default RESULTS_DIR/s_curve.png)")
    gsm8k_tasks = [task.name for task in TASKS.values() if task.paper_column == "GSM8k"]  # the paper's first
    p.add_argument("--gsm8k-task", default=gsm8k_tasks[0], choices=gsm8k_tasks)
    p.set_defaults(run=_reproduce)

    p = commands.add_parser("table", help="render a results directory as a table")
    p.add_argument("results_dir")
    p.add_argument("--format", default="md", choices=["md", "csv", "latex"])
    p.add_argument("--metric", default="accuracy",
                   help="accuracy (our grader), or lm-eval's own: lm_eval_strict_match, lm_eval_flexible_extract "
                        "(GSM8K), lm_eval_exact_match, lm_eval_math_verify (MATH500)")
    p.set_defaults(run=_table)

    p = commands.add_parser("report", help="write every table (md, csv, latex) and plot of a results directory into it")
    p.add_argument("results_dir")
    p.add_argument("--baseline", metavar="RESULTS_DIR",
                   help="another sweep to set beside it over p, e.g. the base model training-free beside its "
                        "fine-tunes: long-context table and S-curve (baseline dashed)")
    p.set_defaults(run=_report)

    p = commands.add_parser("grade", help="re-grade saved generations without a model")
    p.add_argument("--task", required=True, choices=gradable_tasks(),
                   help="a task name: " + ", ".join(gradable_tasks()) + " (the long-context tasks are graded as they run)")
    p.add_argument("input", help="JSONL with gold and response on each line")
    p.add_argument("--out", help="output JSONL (default: stdout)")
    p.set_defaults(run=_grade)

    # Everything after `lm-eval` is lm-eval's: no prefix character of ours, so `--model`, `-h` are its too.
    p = commands.add_parser("lm-eval", help="lm-eval's command line with ppa-eval's engines as --model ppa "
                                            "(see docs/lm-eval-model.md)", add_help=False, prefix_chars="\0")
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER)
    p.set_defaults(run=_lm_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its task loader chats about custom kwargs
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`| head`): nothing is wrong, and nothing more to print
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush finds no pipe
        return 141  # as a process killed by SIGPIPE
    except PPAEvalError as error:
        if os.environ.get("PPA_EVAL_DEBUG"):
            _show_causes(error)
            raise
        print(f"\nerror: {error}", file=sys.stderr)  # newline: a progress bar may hold the line
        return error.exit_status
    return 0


def _show_causes(error: BaseException) -> None:
    """Undo `raise ... from None` along the chain, so a debug traceback shows every cause."""
    while error is not None:
        error.__suppress_context__ = False
        error = error.__cause__ or error.__context__


if __name__ == "__main__":
    sys.exit(main())
