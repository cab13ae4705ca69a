"""The command line as a user meets it: outputs, and one clear line for every bad input."""

import csv
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppa_eval.patterns import PowerPattern
from ppa_eval.report import PAPER_TABLE1

# Not the repository root: there `python -m` would import the source tree instead of the installed package.
RUN_DIR = Path(__file__).resolve().parent
FAST = ["--tasks", "math500,gsm8k", "--limit", "2", "--batch-size", "1", "--max-new-tokens", "6"]


def ppa_eval(*args, check=True, **kwargs):
    result = subprocess.run([sys.executable, "-m", "ppa_eval.cli", *map(str, args)], capture_output=True, text=True,
                            cwd=kwargs.pop("cwd", RUN_DIR), **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"ppa-eval {args} failed:\n{result.stderr[-3000:]}")
    return result


def kill_9_when(ready, *args) -> None:
    """Start `ppa-eval ARGS` and kill -9 it as soon as ready() holds; it must still be running then."""
    process = subprocess.Popen([sys.executable, "-m", "ppa_eval.cli", *map(str, args)], cwd=RUN_DIR,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and not ready():
            time.sleep(0.05)
        assert process.poll() is None, f"ppa-eval {args[0]} finished before it could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_reproduce_paper_prints_the_papers_numbers():
    out = ppa_eval("reproduce", "--paper", "--format", "csv").stdout
    printed = list(csv.reader(out.strip().splitlines()))
    with open(PAPER_TABLE1) as handle:
        paper = list(csv.DictReader(handle))
    assert printed[0] == ["Attention type", "Power", "MATH500", "GSM8k"]
    assert [row[2:] for row in printed[1:]] == [[r["math500"], r["gsm8k"]] for r in paper]
    assert printed[1][0].startswith("Sliding Window") and printed[-1][0].startswith("Full Attention")


@pytest.mark.slow
def test_checkpoint_settings_and_contradictions(tmp_path, make_tiny_checkpoint):
    plain = make_tiny_checkpoint(tmp_path / "plain")
    assert_clean_error(ppa_eval("evaluate", plain, check=False), "no PPA settings", "--power")
    nested = make_tiny_checkpoint(tmp_path / "nested", ppa={"power": "1/2", "window": 8})
    assert_clean_error(ppa_eval("evaluate", nested, "--power", "0.75", check=False), "contradicts", "--force")
    result = ppa_eval("evaluate", nested, "--power", "0.75", "--force", *FAST, "--tasks", "gsm8k", "--out", tmp_path / "out")
    row = next(line for line in result.stdout.splitlines() if line.startswith("| nested__p3-4_w8 "))
    assert [cell.strip() for cell in row.strip("|").split("|")][:2] == ["nested__p3-4_w8", "ppa:p=3/4,w=8"]
    manifest = json.loads(next((tmp_path / "out").glob("*/manifest.json")).read_text())
    assert (manifest["attention"], manifest["power"], manifest["window"]) == ("ppa:p=3/4,w=8", "3/4", 8)
    # a spec names any family; against the config it needs --force as well
    spec = "powerattention:block=4,window=1,sink=1"
    assert_clean_error(ppa_eval("evaluate", nested, "--attention", spec, check=False), "contradicts", "--force")
    assert_clean_error(ppa_eval("evaluate", nested, "--attention", spec, "--power", "1", check=False), "not both")
    ppa_eval("evaluate", nested, "--attention", spec, "--force", *FAST, "--tasks", "gsm8k", "--out", tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "nested__powerattention_block4_window1_sink1" / "gsm8k" /
                          "metrics.json").read_text())
    assert metrics["attention"] == spec and "power" not in metrics
    # finished results are not reused for a run with other settings
    changed = [a if a != "6" else "7" for a in FAST]
    assert_clean_error(ppa_eval("evaluate", nested, "--power", "0.75", "--force", *changed, "--tasks", "gsm8k",
                                "--out", tmp_path / "out", check=False), "other settings", "max_new_tokens: 6 -> 7")


@pytest.mark.slow
def test_bad_inputs_get_one_line_errors(tmp_path, make_tiny_checkpoint):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", ppa_power="1/2", ppa_window=8)
    assert_clean_error(ppa_eval("evaluate", tmp_path / "missing", check=False), "does not exist")
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "config.json").mkdir()  # root ignores permissions; a directory cannot be read as a file
    assert_clean_error(ppa_eval("evaluate", unreadable, check=False), "config.json")
    assert_clean_error(ppa_eval("evaluate", ckpt, "--power", "1.5", "--force", check=False), "power must be in [0, 1]")
    assert_clean_error(ppa_eval("pattern", "--power", "nan", "--length", "8", check=False), "power")
    assert_clean_error(ppa_eval("pattern", "--power", "0.5", "--window", "-1", "--length", "8", check=False), "window")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert_clean_error(ppa_eval("evaluate", ckpt, *FAST, "--out", blocker / "out", check=False), "cannot write results")
    assert_clean_error(ppa_eval("table", tmp_path / "nothing", check=False), "no results")
    assert_clean_error(ppa_eval("sweep", tmp_path / "nothing", check=False), "not a directory")


@pytest.mark.slow
def test_malformed_samples_file_is_named(tmp_path, make_tiny_checkpoint):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", ppa_power="1/2", ppa_window=8)
    out = tmp_path / "out"
    ppa_eval("evaluate", ckpt, *FAST, "--tasks", "gsm8k", "--out", out)
    task_dir = next(out.glob("*/gsm8k"))
    (task_dir / "metrics.json").unlink()
    lines = (task_dir / "samples.jsonl").read_text().splitlines()
    (task_dir / "samples.jsonl").write_text("{not json\n" + "\n".join(lines) + "\n")
    assert_clean_error(ppa_eval("evaluate", ckpt, *FAST, "--tasks", "gsm8k", "--out", out, check=False),
                       "samples.jsonl, line 1", "not valid JSON")
    # grade loses no run: the bad line becomes an error verdict, the others are graded
    graded = [json.loads(line) for line in ppa_eval("grade", "--task", "gsm8k", task_dir / "samples.jsonl").stdout.splitlines()]
    assert len(graded) == 3 and graded[0]["reason"] == "error" and "line 1: not valid JSON" in graded[0]["error"]
    assert all(line["reason"] != "error" for line in graded[1:])


def _limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_disk_full_leaves_nothing_that_looks_finished(tmp_path, make_tiny_checkpoint):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", ppa_power="1/2", ppa_window=8)
    out = tmp_path / "out"
    # Files may grow to 3 KB: the manifest fits, a batch of samples (prompts are ~5 KB each) does not.
    result = ppa_eval("evaluate", ckpt, *FAST, "--tasks", "gsm8k", "--out", out, check=False,
                      preexec_fn=_limit_file_size(3000))
    assert_clean_error(result, "could not write", "samples.jsonl", "too large", "run the same command again")
    task_dir = next(out.glob("*/gsm8k"))
    assert not (task_dir / "metrics.json").exists()
    samples = task_dir / "samples.jsonl"
    assert not samples.exists() or samples.read_bytes() == b""  # the torn batch was rolled back
    # with room again, the same command finishes the run
    ppa_eval("evaluate", ckpt, *FAST, "--tasks", "gsm8k", "--out", out)
    assert json.loads((task_dir / "metrics.json").read_text())["n"] == 2


def build_sweep_dir(root, make_tiny_checkpoint):
    make_tiny_checkpoint(root / "ppa-0.5")                       # p from the directory name
    make_tiny_checkpoint(root / "swa")                           # p = 0 from the name
    make_tiny_checkpoint(root / "model-c", ppa_power=1, ppa_window=64)
    make_tiny_checkpoint(root / "unknown")                       # no p anywhere: reported, skipped
    return root


def read_run(out):
    runs = {}
    for samples in sorted(out.glob("*/*/samples.jsonl")):
        key = str(samples.parent.relative_to(out))
        runs[key] = {
            "samples": [(s["doc_id"], s["response"], s["correct"], s["extracted"])
                        for s in map(json.loads, samples.read_text().splitlines())],
            "accuracy": json.loads((samples.parent / "metrics.json").read_text())["accuracy"],
        }
    return runs


@pytest.fixture(scope="module")
def clean_sweep(tmp_path_factory, make_tiny_checkpoint):
    """(checkpoints, out, result): the sweep directory and an uninterrupted sweep of it, which the
    interrupted, concurrent and sharded sweeps below must each end up equal to."""
    root = tmp_path_factory.mktemp("sweep")
    checkpoints = build_sweep_dir(root / "ckpts", make_tiny_checkpoint)
    return checkpoints, root / "clean", ppa_eval("sweep", checkpoints, *FAST, "--out", root / "clean")


@pytest.mark.slow
def test_sweep_survives_sigkill(tmp_path, clean_sweep):
    checkpoints, clean_out, clean = clean_sweep
    assert "unknown" in clean.stderr and "no ppa_attention or ppa_power" in clean.stderr
    table = (clean_out / "table.md").read_text().splitlines()
    rows = [line for line in table[2:] if line.startswith("|")]
    assert [row.split("|")[2].strip() for row in rows] == ["window:w=64", "ppa:p=1/2,w=64", "ppa:p=1,w=64"]

    interrupted = tmp_path / "interrupted"
    # kill -9 once the second checkpoint has started writing samples
    kill_9_when(lambda: list(interrupted.glob("*p1-2*/*/samples.jsonl")), "sweep", checkpoints, *FAST, "--out", interrupted)
    assert not (interrupted / "table.md").exists()
    ppa_eval("sweep", checkpoints, *FAST, "--out", interrupted)
    assert read_run(interrupted) == read_run(clean_out)


@pytest.mark.slow
def test_sweeps_share_one_directory_killed_concurrent_or_sharded(tmp_path, clean_sweep):
    """Workers on one results directory (job arrays, one process per GPU): a worker killed mid-run
    leaves its run to the next; two started together evaluate each run once (the run lock: the other
    skips it); shards I/N together cover every run once. Each ends with an uninterrupted sweep's results."""
    checkpoints, clean_out, _ = clean_sweep
    expected = read_run(clean_out)

    shared = tmp_path / "shared"
    kill_9_when(lambda: list(shared.glob("*p1-2*/*/samples.jsonl")), "sweep", checkpoints, *FAST, "--out", shared)
    command = [sys.executable, "-m", "ppa_eval.cli", "sweep", str(checkpoints), *FAST, "--out", str(shared)]
    workers = [subprocess.Popen(command, cwd=RUN_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=900) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert read_run(shared) == expected

    sharded = tmp_path / "sharded"
    for index in range(2):
        ppa_eval("sweep", checkpoints, *FAST, "--shard", f"{index}/2", "--out", sharded)
    assert read_run(sharded) == expected


def test_shards_cover_every_run_once():
    from ppa_eval.checkpoints import Checkpoint
    from ppa_eval.cli import _shard
    from ppa_eval.patterns import parse_power

    runs = [Checkpoint(Path(f"c{i}"), PowerPattern(parse_power(p), 64), f"c{i}") for i in range(5)
            for p in ("0", "1/2", "3/4", "1")]
    for count in (1, 2, 3, 7):
        shares = [_shard(runs, f"{index}/{count}") for index in range(count)]
        assert sorted(id(c) for share in shares for c in share) == sorted(map(id, runs))
    assert _shard(runs, "1/3") == _shard(list(runs), "1/3")  # deterministic


def test_a_gpu_sweep_names_runs_as_a_sequential_sweep_does(tmp_path, make_tiny_checkpoint):
    """`sweep --gpus` runs each checkpoint as its own `evaluate`; it must land in the directory a
    sequential sweep uses (nested `*/final` checkpoints included), so each resumes the other."""
    from ppa_eval.checkpoints import discover
    from ppa_eval.cli import build_parser, evaluate_command
    from ppa_eval.runs import run_name

    root = tmp_path / "ckpts"
    (root / "run-a").mkdir(parents=True)
    make_tiny_checkpoint(root / "run-a" / "final", ppa_power="1/2", ppa_window=8)
    checkpoints, _ = discover(root)
    args = build_parser().parse_args(["sweep", str(root), *FAST, "--gpus", "0"])
    command = evaluate_command(args, checkpoints[0], tmp_path / "out")
    evaluate_args = build_parser().parse_args(command[3:])  # after `python -m ppa_eval.cli`
    assert evaluate_args.name == checkpoints[0].name == "run-a_final"
    assert run_name(evaluate_args.name, checkpoints[0].pattern) == "run-a_final__p1-2_w8"
    assert (evaluate_args.attention, evaluate_args.power, evaluate_args.limit) == ("ppa:p=1/2,w=8", None, 2)


def test_only_the_projects_errors_become_one_line(monkeypatch, capsys):
    from ppa_eval import cli
    from ppa_eval.errors import PPAEvalError

    def user_mistake(args):
        try:
            {}["missing"]
        except KeyError:
            raise PPAEvalError("a user mistake; do this instead") from None

    def bug(args):
        raise ValueError("a bug in some library")

    parser = cli.build_parser()
    for command, run in (("table", user_mistake), ("reproduce", bug)):
        parser._subparsers._group_actions[0].choices[command].set_defaults(run=run)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.delenv("PPA_EVAL_DEBUG", raising=False)
    assert cli.main(["table", "x"]) == 2
    assert capsys.readouterr().err.strip() == "error: a user mistake; do this instead"
    with pytest.raises(ValueError, match="a bug in some library"):  # not turned into `error: ...`
        cli.main(["reproduce"])
    monkeypatch.setenv("PPA_EVAL_DEBUG", "1")
    with pytest.raises(PPAEvalError) as raised:
        cli.main(["table", "x"])
    assert isinstance(raised.value.__context__, KeyError) and not raised.value.__suppress_context__


@pytest.mark.slow
def test_sweep_one_checkpoint_over_powers_on_long_context(tmp_path, make_tiny_checkpoint):
    """`sweep CHECKPOINT --powers` evaluates one checkpoint under each p (training-free) and writes the
    same outputs as a directory sweep, plus per-length metrics, long-context tables and plots."""
    ckpt = make_tiny_checkpoint(tmp_path / "tiny", ppa_power="1/2", ppa_window=8)  # --powers overrides the config
    out = tmp_path / "out"
    result = ppa_eval("sweep", ckpt, "--powers", "0:1:1/2", "--attention", "powerattention:block=16,window=1,sink=1",
                      "--attention", "window:w=8,sink=4", "--tasks", "passkey", "--context-lengths", "200,300",
                      "--limit", "2", "--max-new-tokens", "4", "--batch-size", "4", "--out", out)
    runs = sorted(path.name for path in out.iterdir() if path.is_dir())
    assert runs == ["tiny__p0_w8", "tiny__p1-2_w8", "tiny__p1_w8", "tiny__powerattention_block16_window1_sink1",
                    "tiny__window_w8_sink4"]
    manifest = json.loads((out / "tiny__powerattention_block16_window1_sink1" / "manifest.json").read_text())
    assert manifest["attention"] == "powerattention:block=16,window=1,sink=1" and "power" not in manifest
    assert (out / "equal_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "% of dense" in result.stdout
    metrics = json.loads((out / "tiny__p1-2_w8" / "passkey" / "metrics.json").read_text())
    assert metrics["n"] == 4 and sorted(metrics["by_length"]) == ["200", "300"]
    assert all(cell["n"] == 2 for cell in metrics["by_length"].values())
    samples = [json.loads(line) for line in (out / "tiny__p1-2_w8" / "passkey" / "samples.jsonl").read_text().splitlines()]
    assert sorted({s["context_length"] for s in samples}) == [200, 300] and all(0 <= s["depth"] <= 1 for s in samples)
    assert all(s["prompt_tokens"] <= s["context_length"] for s in samples)
    manifest = json.loads((out / "tiny__p1-2_w8" / "manifest.json").read_text())
    assert manifest["context_lengths"] == [200, 300] and len(manifest["generated_sha256"]["passkey"]) == 64
    # the same problems under every p
    hashes = {json.loads((out / run / "manifest.json").read_text())["generated_sha256"]["passkey"] for run in runs}
    assert len(hashes) == 1
    for name in ("table.md", "table.csv", "table.tex", "s_curve_long_context.png", "heatmap_tiny__p0_w8.png"):
        assert (out / name).stat().st_size > 0, name
    assert "200 tokens" in (out / "table.md").read_text() and "200 tokens" in result.stdout
    assert (out / "s_curve_long_context.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a length beyond the model's context is one line naming the maximum
    assert_clean_error(ppa_eval("evaluate", ckpt, "--tasks", "passkey", "--context-lengths", "9000", "--limit", "1",
                                "--out", tmp_path / "too-long", check=False), "9000", "4096")


# --- issue 32: ppa-eval tried as a new user would -----------------------------------------------

TINY = ["--tasks", "gsm8k", "--limit", "1", "--batch-size", "1", "--max-new-tokens", "4"]


@pytest.mark.slow
def test_evaluate_mistakes_get_one_line_errors(tmp_path, make_tiny_checkpoint):
    # Flag mistakes are checked in process by test_errors.py; these are damaged checkpoints, as a subprocess sees them.
    out = tmp_path / "out"
    corrupt = make_tiny_checkpoint(tmp_path / "corrupt", ppa_power="1/2", ppa_window=8)
    (corrupt / "model.safetensors").write_bytes(b"\xff" * 1000)
    assert_clean_error(ppa_eval("evaluate", corrupt, *TINY, "--out", out, check=False),
                       "cannot load the model of", "header too large")
    untokenized = make_tiny_checkpoint(tmp_path / "untokenized", ppa_power="1/2", ppa_window=8)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (untokenized / name).unlink()
    assert_clean_error(ppa_eval("evaluate", untokenized, *TINY, "--out", out, check=False),
                       "cannot load the tokenizer of", "tokenizer files")
    (tmp_path / "x.gguf").write_bytes(bytes(range(256)) * 20)
    assert_clean_error(ppa_eval("evaluate", tmp_path / "x.gguf", "--power", "1/2", *TINY, "--out", out, check=False),
                       "x.gguf", "not a GGUF file")


@pytest.mark.slow
def test_a_failed_start_does_not_block_the_corrected_command(tmp_path, make_tiny_checkpoint):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", ppa_power="1/2", ppa_window=8)
    weights = ckpt / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[:1000])  # a copy that stopped short
    out = tmp_path / "out"
    assert_clean_error(ppa_eval("evaluate", ckpt, *TINY, "--out", out, check=False), "cannot load the model")
    weights.write_bytes(intact)  # copied again: another checkpoint hash, the same run directory
    ppa_eval("evaluate", ckpt, *TINY, "--out", out)
    assert json.loads(next(out.glob("*/gsm8k/metrics.json")).read_text())["n"] == 1


@pytest.mark.slow
def test_pattern_mistakes_get_one_line_errors(tmp_path):
    assert_clean_error(ppa_eval("pattern", "--power", "1/2", "--length", "100000000000", check=False),
                       "--length must be between 1 and 16,777,216")
    assert_clean_error(ppa_eval("pattern", "--power", "1/2", "--length", "64", "--plot", tmp_path / "no" / "m.png",
                                check=False), "cannot write the plot", "No such file or directory", "another --plot")
    # a reader that stops early (`| head -c 600`) is no error of ours
    reader = subprocess.Popen([sys.executable, "-m", "ppa_eval.cli", "pattern", "--attention", "full", "--length",
                               "100000", "--json"], cwd=RUN_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(reader.stdout.read(600)) == 600
    reader.stdout.close()
    assert reader.wait() == 141 and reader.stderr.read() == b""


@pytest.mark.slow
def test_a_sweep_goes_past_a_damaged_checkpoint(tmp_path, make_tiny_checkpoint):
    root = tmp_path / "ckpts"
    make_tiny_checkpoint(root / "swa")
    make_tiny_checkpoint(root / "ppa-0.5")
    make_tiny_checkpoint(root / "full")
    (root / "ppa-0.5" / "model.safetensors").write_bytes(b"\xff" * 1000)  # the second of three, in order of p
    out = tmp_path / "out"
    result = ppa_eval("sweep", root, *TINY, "--out", out, check=False)
    assert_clean_error(result, "1 of 3 checkpoints failed", "ppa-0.5", "finished runs are kept")
    assert "header too large" in result.stderr
    assert sorted(path.parent.parent.name for path in out.glob("*/gsm8k/metrics.json")) == ["full__p1_w64", "swa__p0_w64"]
    assert (out / "table.md").exists()


@pytest.mark.slow
def test_max_new_tokens_zero_is_refused_not_replaced(tmp_path, make_tiny_checkpoint):
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", ppa_power="1/2", ppa_window=8)
    assert_clean_error(ppa_eval("evaluate", ckpt, *TINY, "--max-new-tokens", "0", "--out", tmp_path / "out", check=False),
                       "--max-new-tokens must be at least 1", "leave it out for the default")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("samples.jsonl"))


@pytest.mark.slow
def test_grade_help_names_only_the_tasks_grade_takes(tmp_path):
    help_text = " ".join(ppa_eval("grade", "--help").stdout.split())
    offered = help_text.split("a task name: ")[1].split(" (")[0].split(", ")
    assert offered == ["math500", "gsm8k", "gsm8k_cot"]
    (tmp_path / "in.jsonl").write_text(json.dumps({"gold": "18", "response": "#### 18"}) + "\n")
    from ppa_eval.cli import main

    for task in offered:
        assert main(["grade", "--task", task, str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl")]) == 0
    refused = ppa_eval("grade", "--task", "passkey", tmp_path / "in.jsonl", check=False)
    assert refused.returncode == 2 and "invalid choice: 'passkey'" in refused.stderr


def run_main(*argv):
    """ppa-eval in a fresh interpreter, which prints the heavy modules it imported on its stdout."""
    script = ("import sys; from ppa_eval.cli import main; status = main(sys.argv[1:]); "
              "print(sorted(m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules)); sys.exit(status)")
    return subprocess.run([sys.executable, "-c", script, *map(str, argv)], capture_output=True, text=True, cwd=RUN_DIR)


def test_small_things_a_new_user_meets(tmp_path):
    # argument mistakes are answered before any heavy import (it takes seconds)
    for argv in (["evaluate", "--power", "1", "--limit", "0"], ["evaluate", "--power", "1", "--device", "tpu"],
                 ["sweep", "--powers", "0,1", "--batch-size", "0"], ["evaluate", tmp_path / "missing"],
                 ["sweep", tmp_path / "missing"]):
        result = run_main(*argv)
        assert_clean_error(result)
        assert result.stdout.strip() == "[]", (argv, result.stdout)
    # a directory without checkpoints says so, instead of pointing at lines that are not there
    (tmp_path / "empty").mkdir()
    assert_clean_error(ppa_eval("sweep", tmp_path / "empty", check=False), "no checkpoint under", "config.json")
    # nothing to grade is not an accuracy of 0
    (tmp_path / "empty.jsonl").write_text("")
    assert_clean_error(ppa_eval("grade", "--task", "gsm8k", tmp_path / "empty.jsonl", check=False), "no line to grade")
    from ppa_eval import __version__

    assert ppa_eval("--version").stdout.strip() == f"ppa-eval {__version__}"
    readme = (RUN_DIR.parent / "README.md").read_text()
    assert "PPA_EVAL_CACHE" in readme and "XDG_CACHE_HOME" in readme and "700 MB" in readme


def test_vllm_distributed_settings_reach_vllm_and_the_per_gpu_workers(tmp_path):
    """Tensor and pipeline parallel sizes and the executor backend (ray for several nodes) pass through
    to vllm.LLM's arguments as given, and to the `evaluate` workers of a --gpus sweep."""
    from ppa_eval.checkpoints import Checkpoint
    from ppa_eval.cli import _vllm_options, build_parser, evaluate_command
    from ppa_eval.engines.vllm_engine import VLLMOptions, engine_arguments

    flags = ["--engine", "vllm", "--tensor-parallel-size", "4", "--pipeline-parallel-size", "2",
             "--distributed-executor-backend", "ray"]
    args = build_parser().parse_args(["sweep", str(tmp_path), *flags])
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    arguments = engine_arguments(tmp_path, PowerPattern("1/2", 64), "cuda", "bfloat16", 0,
                                 VLLMOptions(**_vllm_options(args)))
    assert (arguments["tensor_parallel_size"], arguments["pipeline_parallel_size"],
            arguments["distributed_executor_backend"]) == (4, 2, "ray")
    assert "distributed_executor_backend" not in engine_arguments(tmp_path, PowerPattern(1, 0), "cuda", "auto", 0,
                                                                  VLLMOptions())  # vLLM's own choice
    command = " ".join(evaluate_command(args, Checkpoint(tmp_path, PowerPattern("1/2", 64), "m"), tmp_path))
    assert " ".join(flags[2:]) in command
