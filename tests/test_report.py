"""Report: tables, the paper's Table 1, reproduction differences, McNemar, the S-curve.

The results tree below is built by hand so that every number asserted here was worked out on
paper from the lists of right/wrong answers (discordant counts b, c per run against p = 1).
"""

import csv
import json
import math
import shutil
from fractions import Fraction
from itertools import combinations
from pathlib import Path

import matplotlib.image
import pytest
from matplotlib.transforms import Bbox

from ppa_eval.patterns import parse_power, parse_spec
from ppa_eval.runs import RunError
from ppa_eval.stats import accuracy_ci, mcnemar_exact
from ppa_eval.report import (
    PAPER_TABLE1,
    ReportError,
    attention_type,
    collect,
    long_context_rows,
    p_curve_rows,
    paired_significance,
    plot_s_curve,
    power_text,
    render_against_baseline,
    render_cost_table,
    render_paper_table,
    render_reproduction,
    render_table,
    write_report,
)
from reference import brute_matrix

# task -> right/wrong per problem, by run. math500 has 12 problems, gsm8k 10.
FULL_MATH = [1] * 8 + [0] * 4
RUNS = {
    # run directory: (power, {task: answers})
    "m__p0_w64": ("0", {"math500": [1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],  # b=1, c=6 vs full
                        "gsm8k": [1] * 7 + [0] * 3}),                       # b=0, c=2
    "m__p1-3_w64": ("1/3", {"math500": [1] * 6 + [0] * 6}),                 # b=0, c=2
    "sweep/m__p1-2_w64": ("1/2", {"math500": FULL_MATH,                     # b=0, c=0
                                  "gsm8k": [1] * 8 + [0, 1]}),              # b=1, c=1
    "m__p3-4_w64": ("3/4", {"math500": [1] * 11 + [0]}),                    # b=3, c=0; gsm8k unfinished
    "m__p1_w64": ("1", {"math500": FULL_MATH, "gsm8k": [1] * 9 + [0]}),
}


def write_task(run_dir, power, task, answers, window=64, finished=True):
    task_dir = run_dir / task
    task_dir.mkdir(parents=True)
    lines = [json.dumps({"doc_id": f"{task}-{i}", "gold": "1", "response": "...", "extracted": "1",
                         "correct": bool(right), "finish_reason": "stop"}) for i, right in enumerate(answers)]
    (task_dir / "samples.jsonl").write_text("\n".join(lines) + "\n")
    if finished:
        right, n = sum(answers), len(answers)
        metrics = {"task": task, "checkpoint": f"ckpt-{power}", "power": power, "window": window,
                   "accuracy": right / n, "ci95": list(accuracy_ci(right, n)), "n": n,
                   "no_answer_rate": 0.0, "truncated_rate": 0.0, "grader_disagreements": 0,
                   "grader_timeouts": 0, "tokens_per_s": 100.0, "wall_s": 1.0, "limit": None}
        (task_dir / "metrics.json").write_text(json.dumps(metrics))
    return task_dir


@pytest.fixture
def results(tmp_path):
    for name, (power, tasks) in RUNS.items():
        run_dir = tmp_path / name
        run_dir.mkdir(parents=True)
        manifest = {"checkpoint": f"ckpt-{power}", "power": power, "window": 64}
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
        for task, answers in tasks.items():
            write_task(run_dir, power, task, answers)
    write_task(tmp_path / "m__p3-4_w64", "3/4", "gsm8k", [1, 0, 1], finished=False)  # killed mid-run
    return tmp_path


def csv_rows(text):
    return list(csv.DictReader(text.splitlines()))


# --- statistics -----------------------------------------------------------------------------


def test_wilson_interval_matches_hand_computed_values():
    # Wilson 95% for 8/10 is the textbook [0.4902, 0.9433]; 0/10 has upper z^2/(n+z^2) = 0.2775.
    assert accuracy_ci(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert accuracy_ci(8, 12) == pytest.approx((0.3906, 0.8619), abs=5e-5)
    assert accuracy_ci(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)
    assert accuracy_ci(10, 10) == pytest.approx((0.7225, 1.0), abs=5e-5)
    with pytest.raises(ValueError):
        accuracy_ci(0, 0)


@pytest.mark.parametrize("b, c, expected", [
    (6, 1, 0.125),        # 2 * (C(7,0) + C(7,1)) / 2^7 = 16/128
    (1, 6, 0.125),
    (3, 0, 0.25),         # 2 / 2^3
    (0, 2, 0.5),
    (1, 1, 1.0),          # 2 * 3/4, capped at 1
    (0, 0, 1.0),
    (10, 0, 2 / 1024),
])
def test_exact_mcnemar(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


# --- collecting -----------------------------------------------------------------------------


def test_collect_finds_nested_runs_and_notes_unfinished_tasks(results):
    df = collect(results)
    assert len(df) == 8  # 9 tasks written, one without metrics.json
    assert list(df.drop_duplicates("run")["run"]) == [
        "m__p0_w64", "m__p1-3_w64", "sweep/m__p1-2_w64", "m__p3-4_w64", "m__p1_w64"]
    half = df[(df.run == "sweep/m__p1-2_w64") & (df.task == "gsm8k")].iloc[0]
    assert half.power == Fraction(1, 2) and half.power_str == "1/2" and half.window == 64
    assert (half.accuracy, half.n, half.checkpoint) == (0.9, 10, "ckpt-1/2")
    assert not ((df.run == "m__p3-4_w64") & (df.task == "gsm8k")).any()
    assert df.attrs["notes"] == ["m__p3-4_w64: gsm8k not finished (no metrics.json); left out"]


def test_collect_on_a_single_run_directory(results):
    df = collect(results / "m__p1_w64")
    assert list(df.run) == ["m__p1_w64", "m__p1_w64"] and list(df.task) == ["gsm8k", "math500"]


@pytest.mark.parametrize("where", ["empty", "missing"])
def test_collect_without_results_says_what_to_run(tmp_path, where):
    target = tmp_path if where == "empty" else tmp_path / "nope"
    with pytest.raises(ReportError, match=r"^no results under .*; run ppa-eval evaluate/sweep first$"):
        collect(target)


@pytest.mark.parametrize("content, message", [
    ("{not json", r"metrics\.json: not valid JSON"),
    ("[1, 2]", r"metrics\.json: expected a JSON object, got list"),
    (json.dumps({"task": "math500", "checkpoint": "c", "power": "1", "window": 64, "ci95": [0, 1], "n": 3}),
     r"metrics\.json: missing 'accuracy'"),
    (json.dumps({"task": "math500", "checkpoint": "c", "power": "1", "window": 64, "accuracy": 0.5,
                 "ci95": [0, 1], "n": "3"}), r"metrics\.json: 'n' must be a whole number >= 0, got '3'"),
    (json.dumps({"task": "math500", "checkpoint": "c", "power": "5/4", "window": 64, "accuracy": 0.5,
                 "ci95": [0, 1], "n": 3}), r"metrics\.json: power must be in \[0, 1\]"),
])
def test_malformed_metrics_name_the_file(tmp_path, content, message):
    task_dir = tmp_path / "run" / "math500"
    task_dir.mkdir(parents=True)
    (task_dir / "metrics.json").write_text(content)
    with pytest.raises(RunError, match=str(task_dir).replace("\\", "\\\\") + "/" + message):
        collect(tmp_path)


@pytest.mark.parametrize("line, message", [
    ("{oops", r"samples\.jsonl, line 2: not valid JSON"),
    ('{"doc_id": "math500-1", "correct": "yes"}',
     r"samples\.jsonl, line 2: 'correct' must be true or false, got 'yes'"),
    ('{"doc_id": 7, "correct": true}', r"samples\.jsonl, line 2: 'doc_id' must be a string, got 7"),
    ('{"doc_id": "math500-0", "correct": true}', r"samples\.jsonl, line 2: doc_id 'math500-0' appears twice"),
])
def test_malformed_samples_name_file_and_line(results, line, message):
    samples = results / "m__p1_w64" / "math500" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    lines[1] = line
    samples.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match=message):
        paired_significance(collect(results), "math500")


def test_samples_that_disagree_with_metrics_are_refused(results):
    samples = results / "m__p0_w64" / "math500" / "samples.jsonl"
    samples.write_text("\n".join(samples.read_text().splitlines()[:-1]) + "\n")
    message = r"samples\.jsonl: 3 correct of 11 samples, but metrics\.json says accuracy 0\.25 of n=12"
    with pytest.raises(ReportError, match=message):
        paired_significance(collect(results), "math500")


# --- tables ---------------------------------------------------------------------------------


def test_table_rows_by_power_with_percent_ci_and_n(results):
    rows = csv_rows(render_table(collect(results), "csv"))  # the fixture's runs predate specs: p and w name them
    assert [(r["run"], r["attention"]) for r in rows] == [
        ("m__p0_w64", "window:w=64"), ("m__p1-3_w64", "ppa:p=1/3,w=64"), ("sweep/m__p1-2_w64", "ppa:p=1/2,w=64"),
        ("m__p3-4_w64", "ppa:p=3/4,w=64"), ("m__p1_w64", "ppa:p=1,w=64")]
    half = rows[2]
    # 8/12 = 66.7%, Wilson [39.06, 86.19]; 9/10 = 90.0%
    assert (half["math500 %"], half["math500 95% CI"], half["math500 n"]) == ("66.7", "[39.1, 86.2]", "12")
    assert (half["gsm8k %"], half["gsm8k n"]) == ("90.0", "10")
    assert (rows[0]["math500 %"], rows[3]["math500 %"]) == ("25.0", "91.7")
    assert (rows[3]["gsm8k %"], rows[3]["gsm8k 95% CI"], rows[3]["gsm8k n"]) == ("-", "-", "-")


def test_table_formats(results):
    df = collect(results)
    markdown = render_table(df, "md")
    assert "| sweep/m__p1-2_w64 " in markdown and "| 66.7 " in markdown and "| 90.0 " in markdown
    latex = render_table(df, "latex")
    assert r"\begin{tabular}" in latex and r"math500 \%" in latex and r"m\_\_p0\_w64" in latex
    with pytest.raises(ReportError, match="unknown table format 'html'; choose one of md, csv, latex"):
        render_table(df, "html")


def paper_csv():
    with open(PAPER_TABLE1, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("fmt", ["csv", "md"])
def test_paper_table_is_the_csv_cell_for_cell(fmt):
    text = render_paper_table(fmt)
    if fmt == "csv":
        rendered = [[r["Attention type"], r["Power"], r["MATH500"], r["GSM8k"]] for r in csv_rows(text)]
        header = list(csv_rows(text)[0])
    else:
        lines = text.strip().splitlines()
        header = [cell.strip() for cell in lines[0].strip("|").split("|")]
        rendered = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert header == ["Attention type", "Power", "MATH500", "GSM8k"]
    expected = [[f"{r['attention_type']} {r['complexity']}", r["power"], r["math500"], r["gsm8k"]]
                for r in paper_csv()]
    assert rendered == expected
    assert rendered[0] == ["Sliding Window O(L^1)", "0", "0.674", "0.738"]
    assert rendered[3][3] == "0.740"  # the trailing zero is the paper's, not lost to float parsing


def test_attention_type_reproduces_the_paper_labels():
    for row in paper_csv():
        assert attention_type(parse_power(row["power"])) == f"{row['attention_type']} {row['complexity']}"
    assert attention_type(Fraction(1, 3)) == "PPA O(L^(4/3))"


# --- reproduction and significance ---------------------------------------------------------


def test_paired_significance_against_full_attention(results):
    tests = paired_significance(collect(results), "math500").set_index("run")
    assert tests.loc["m__p0_w64", ["pairs", "b", "c", "p_value"]].tolist() == [12, 1, 6, 0.125]
    assert tests.loc["m__p3-4_w64", ["b", "c", "p_value"]].tolist() == [3, 0, 0.25]
    assert tests.loc["m__p1_w64", ["b", "c", "p_value"]].tolist() == [0, 0, 1.0]


def test_paired_significance_needs_one_full_attention_run(results):
    df = collect(results)
    with pytest.raises(ReportError, match=r"no full-attention \(p=1\) run for math500"):
        paired_significance(df[df.power != 1], "math500")


def test_reproduction_beside_the_paper(results):
    rows = {r["Power"]: r for r in csv_rows(render_reproduction(collect(results), "csv"))}
    assert list(rows) == ["0", "0.125", "0.25", "1/3", "0.375", "0.5", "0.625", "0.75", "0.875", "1"]

    def cells(power, task):
        row = rows[power]
        return [row[f"{task} {what}"] for what in ("ours", "paper", "diff", "McNemar p vs p=1")]

    assert rows["0"]["Attention type"] == "Sliding Window O(L^1)"
    assert cells("0", "MATH500") == ["0.250", "0.674", "-0.424", "0.125"]
    assert cells("0", "GSM8k") == ["0.700", "0.738", "-0.038", "0.5"]
    assert cells("0.125", "MATH500") == ["-", "0.674", "-", "-"]
    assert rows["1/3"]["Attention type"] == "PPA O(L^(4/3))"
    assert cells("1/3", "MATH500") == ["0.500", "-", "-", "0.5"]
    assert cells("1/3", "GSM8k") == ["-", "-", "-", "-"]
    assert cells("0.5", "MATH500") == ["0.667", "0.658", "+0.009", "1"]
    assert cells("0.5", "GSM8k") == ["0.900", "0.751", "+0.149", "1"]
    assert cells("0.75", "MATH500") == ["0.917", "0.798", "+0.119", "0.25"]
    assert cells("0.75", "GSM8k") == ["-", "0.876", "-", "-"]
    assert cells("1", "MATH500") == ["0.667", "0.808", "-0.141", "ref"]
    assert cells("1", "GSM8k") == ["0.900", "0.922", "-0.022", "ref"]


def test_reproduction_without_full_attention_leaves_significance_blank(results):
    df = collect(results)
    rows = {r["Power"]: r for r in csv_rows(render_reproduction(df[df.power != 1], "csv"))}
    assert rows["0"]["MATH500 McNemar p vs p=1"] == "-" and rows["1"]["MATH500 ours"] == "-"


def test_reproduction_refuses_two_runs_at_one_power(results):
    run_dir = results / "m__p3-4_w128"
    write_task(run_dir, "3/4", "math500", [1] * 12, window=128)
    with pytest.raises(ReportError, match=r"several math500 runs at p=3/4 \(m__p3-4_w64, m__p3-4_w128\)"):
        render_reproduction(collect(results), "md")


# --- the S-curve ----------------------------------------------------------------------------


def test_s_curve_png(results, tmp_path):
    path = plot_s_curve(collect(results), tmp_path / "figs" / "s_curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 400 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # lines and text, not a blank canvas


def test_collect_notes_limited_and_unstarted_runs(results):
    metrics_path = results / "m__p1-3_w64" / "math500" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics_path.write_text(json.dumps({**metrics, "limit": 12}))
    (results / "m__p7-8_w64").mkdir()
    (results / "m__p7-8_w64" / "manifest.json").write_text("{}")
    assert collect(results).attrs["notes"] == [
        "m__p3-4_w64: gsm8k not finished (no metrics.json); left out",
        "m__p7-8_w64: no task started; left out",
        "m__p1-3_w64/math500: limited to 12 problems (limit), n=12",
    ]


def test_tasks_of_one_run_must_share_checkpoint_and_pattern(results):
    write_task(results / "m__p1-3_w64", "1/2", "gsm8k", [1, 0])
    message = (r"math500/metrics\.json: checkpoint 'ckpt-1/3', ppa:p=1/3,w=64 differs from the run's other "
               r"tasks \(checkpoint 'ckpt-1/2', ppa:p=1/2,w=64\)")
    with pytest.raises(ReportError, match=message):
        collect(results)


def test_power_text_uses_the_papers_decimals():
    assert [power_text(Fraction(i, 8)) for i in range(9)] == [
        "0", "0.125", "0.25", "0.375", "0.5", "0.625", "0.75", "0.875", "1"]
    assert (power_text(Fraction(1, 3)), power_text(Fraction(3, 20))) == ("1/3", "0.15")


# --- pattern families side by side ----------------------------------------------------------

# run -> (spec, passkey hits out of 4 at lengths 32 and 64)
FAMILY_RUNS = {"m__p0_w8": ("window:w=8", (1, 0)), "m__window_w8_sink2": ("window:w=8,sink=2", (2, 1)),
               "m__p0_w24": ("window:w=24", (2, 1)),
               "m__p1-2_w8": ("ppa:p=1/2,w=8", (3, 1)), "m__ppa_p1-2_w8_sink2": ("ppa:p=1/2,w=8,sink=2", (3, 2)),
               "m__powerattention_block4_window1_sink1": ("powerattention:block=4,window=1,sink=1", (4, 2)),
               "m__full": ("full", (4, 4))}


@pytest.fixture
def family_results(tmp_path):
    for run, (spec, hits) in FAMILY_RUNS.items():
        task_dir = tmp_path / run / "passkey"
        task_dir.mkdir(parents=True)
        lines = [json.dumps({"doc_id": f"{length}-{i}", "correct": i < right, "context_length": length, "depth": i / 4})
                 for length, right in zip((32, 64), hits) for i in range(4)]
        (task_dir / "samples.jsonl").write_text("\n".join(lines) + "\n")
        by_length = {str(length): {"accuracy": right / 4, "ci95": list(accuracy_ci(right, 4)), "n": 4}
                     for length, right in zip((32, 64), hits)}
        metrics = {"task": "passkey", "checkpoint": "m", "attention": spec, "accuracy": sum(hits) / 8,
                   "ci95": list(accuracy_ci(sum(hits), 8)), "n": 8, "by_length": by_length, "limit": 4}
        if spec.startswith(("ppa", "window")) and "sink" not in spec:  # as evaluate writes them
            pattern = parse_spec(spec)
            metrics |= {"power": str(pattern.power), "window": pattern.window}
        (task_dir / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path


def test_families_are_ordered_and_only_sink_free_ppa_is_on_the_p_curve(family_results):
    df = collect(family_results).drop_duplicates("run")
    assert list(df["attention"]) == ["window:w=8", "window:w=8,sink=2", "window:w=24", "ppa:p=1/2,w=8",
                                     "ppa:p=1/2,w=8,sink=2", "full", "powerattention:block=4,window=1,sink=1"]
    assert list(df["series"]) == ["window", "window+sink2", "window", "ppa", "ppa+sink2", "full", "powerattention"]
    assert list(df["p_curve"]) == [True, False, True, True, False, True, False]
    # the curve over p holds w fixed at the PPA runs' window: the 24-token window is another curve's
    curve = p_curve_rows(long_context_rows(collect(family_results)))
    assert sorted(set(curve["attention"])) == ["full", "ppa:p=1/2,w=8", "window:w=8"]
    assert df["power"].tolist()[-1] is None and math.isnan(df["window"].tolist()[-1])  # PPA's p and w only


def test_cost_is_the_brute_force_fraction_of_dense_pairs(family_results):
    cells = long_context_rows(collect(family_results))
    for row in cells.itertuples():
        matrix = brute_matrix(row.attention, row.length)
        assert row.fraction_of_dense == matrix.sum() / (row.length * (row.length + 1) // 2), row
    rows = csv_rows(render_cost_table(collect(family_results), "csv"))
    at_64 = [r for r in rows if r["tokens"] == "64"]
    costs = [float(r["% of dense"]) for r in at_64]
    assert costs == sorted(costs) and at_64[-1]["series"] == "full" and at_64[-1]["% of dense"] == "100.00"
    pa = next(r for r in at_64 if r["series"] == "powerattention")
    assert pa["accuracy % [95% CI] (n)"].startswith("50.0 [")


@pytest.mark.slow
def test_report_compares_families_and_full_is_the_reference(family_results):
    tests = paired_significance(collect(family_results), "passkey")
    assert dict(zip(tests["attention"], tests["c"]))["window:w=8"] == 7  # full right, window wrong
    tables, written = write_report(family_results)
    assert "powerattention:block=4,window=1,sink=1" in tables and "% of dense" in tables
    assert {path.name for path in written} >= {"equal_cost.png", "s_curve_long_context.png", "table.md"}
    assert matplotlib.image.imread(family_results / "equal_cost.png").shape[1] > 500


@pytest.mark.slow
def test_report_against_a_baseline_sets_each_p_beside_the_baselines(family_results, tmp_path_factory):
    """The fine-tuned layout: a row per p on the PPA curve, a column per task and length, and beside
    it the baseline's accuracy at that p (here a baseline whose window run found one more key at 32)."""
    baseline = tmp_path_factory.mktemp("baseline")
    shutil.copytree(family_results / "m__p0_w8", baseline / "m__p0_w8")
    metrics_path = baseline / "m__p0_w8" / "passkey" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["by_length"]["32"] |= {"accuracy": 0.5, "ci95": list(accuracy_ci(2, 4))}
    metrics_path.write_text(json.dumps(metrics))

    rows = csv_rows(render_against_baseline(collect(family_results), collect(baseline), "csv"))
    assert [(r["Attention type"], r["Power"]) for r in rows] == [
        ("Sliding Window O(L^1)", "0"), ("PPA O(L^1.5)", "0.5"), ("Full Attention O(L^2)", "1")]
    window = rows[0]
    ours = FAMILY_RUNS["m__p0_w8"][1][0]
    assert window["passkey 32"].startswith(f"{100 * ours / 4:.1f} [") and window["passkey 32 baseline"] == "50.0"
    assert rows[1]["passkey 64 baseline"] == "-"  # the baseline has no p = 1/2 run
    tables, written = write_report(family_results, baseline)
    assert {"table_vs_baseline.md", "table_vs_baseline.csv", "s_curve_vs_baseline.png"} <= {p.name for p in written}
    assert matplotlib.image.imread(family_results / "s_curve_vs_baseline.png").shape[1] > 500


# --- what the report writes, as a reader meets it ---------------------------------------------


@pytest.fixture
def narrow_cost_results(tmp_path):
    """Two long-context tasks whose patterns all cost 43-100% of dense: less than half a decade."""
    for run, spec in {"m__w": "window:w=12", "m__pa": "powerattention:block=4,window=1,sink=1", "m__full": "full"}.items():
        for task in ("passkey", "niah_multikey"):
            task_dir = tmp_path / run / task
            task_dir.mkdir(parents=True)
            lines = [json.dumps({"doc_id": f"{length}-{i}", "correct": i < 2, "context_length": length, "depth": i / 4})
                     for length in (32, 48) for i in range(4)]
            (task_dir / "samples.jsonl").write_text("\n".join(lines) + "\n")
            cell = {"accuracy": 0.5, "ci95": list(accuracy_ci(2, 4)), "n": 4}
            metrics = {"task": task, "checkpoint": "m", "attention": spec, "accuracy": 0.5, "ci95": list(accuracy_ci(4, 8)),
                       "n": 8, "by_length": {"32": cell, "48": cell}, "limit": 4}
            (task_dir / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path


def drawn_texts(fig):
    """(text, box in pixels) of every title, axis label and tick label in view that `fig` shows."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [fig._suptitle] if fig._suptitle else []
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for locations, labels in ((axis.get_majorticklocs(), axis.get_majorticklabels()),
                                      (axis.get_minorticklocs(), axis.get_minorticklabels())):
                texts += [label for location, label in zip(locations, labels) if low <= location <= high]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text().strip()]


def assert_legible(fig, name):
    """Every text inside the picture, and no two texts on top of each other."""
    boxes = drawn_texts(fig)
    for text, box in boxes:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, (name, text)
    for (text, box), (other, other_box) in combinations(boxes, 2):
        common = Bbox.intersection(box, other_box)
        assert common is None or common.width * common.height < 1, (name, text, other)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["family_results", "narrow_cost_results"])
def test_plots_keep_their_labels_whole_and_apart(request, fixture, monkeypatch):
    """The heatmap's depth label inside the picture, each panel's clear of its left neighbour's tick
    labels, and a narrow log axis of costs with labels that do not run together."""
    from ppa_eval import report

    checked, save = [], report._save

    def check_and_save(fig, path):
        assert_legible(fig, Path(path).name)  # before saving, which closes the figure
        checked.append(Path(path).name)
        return save(fig, path)

    monkeypatch.setattr(report, "_save", check_and_save)
    write_report(request.getfixturevalue(fixture))
    assert "equal_cost.png" in checked and any(name.startswith("heatmap_") for name in checked)


@pytest.mark.slow
def test_every_csv_table_is_one_table_a_csv_reader_takes(narrow_cost_results):
    import pandas

    _, written = write_report(narrow_cost_results)
    tables = {path.name: pandas.read_csv(path) for path in written if path.suffix == ".csv"}
    assert sorted(tables) == ["table.csv", "table_cost.csv", "table_long_context.csv"]
    assert list(tables["table.csv"]["run"]) == list(collect(narrow_cost_results).drop_duplicates("run")["run"])
    assert len(tables["table_long_context.csv"]) == 6 and len(tables["table_cost.csv"]) == 12
