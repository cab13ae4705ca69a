"""Results directories -> tables, the paper's Table 1 beside ours, the S-curve, paired significance,
and patterns of different families compared at equal cost.

`ppa-eval evaluate` writes one directory per (checkpoint, pattern) run, holding manifest.json
and one sub-directory per task with samples.jsonl and metrics.json. `collect` gathers every
finished task (a metrics.json, found recursively, so sweeps nested one level deeper work) into a
DataFrame with one row per (run, task); the render and plot functions read only that frame, and
paired significance reads the samples.jsonl files the frame points to.

The paper's tables and S-curves are over p, so they read the sink-free PPA runs (its p = 0 and
p = 1 ends included: window and full); runs of other patterns (PowerAttention, sinks) appear in
the per-run tables and, for long context, beside PPA at their cost: attended pairs as a fraction
of dense causal attention at each context length.

Every p is scored on the same problems, so two runs are compared problem by problem: an exact
McNemar test on the problems that exactly one of the two runs gets right.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from importlib.resources import files
from pathlib import Path

import pandas as pd

from ppa_eval.errors import PPAEvalError
from ppa_eval.runs import read_metrics, read_samples, read_verdicts
from ppa_eval.stats import accuracy_ci, mcnemar_exact
from ppa_eval.patterns import dense_pairs, pairs, parse_power, parse_spec, sort_key
from ppa_eval.perplexity import bucket_bounds
from ppa_eval.tasks import PAPER_TASKS, TASKS

PAPER_TABLE1 = Path(str(files("ppa_eval.resources") / "paper_table1.csv"))  # its task columns: PAPER_TASKS
TABLE_FORMATS = ("md", "csv", "latex")


def _task_rank(task: str) -> int:
    """A task's place in tables: the registry's order (the paper's tasks first), unknown tasks last."""
    order = list(TASKS)
    return order.index(task) if task in order else len(order)


def _our_tasks(substitutes: tuple[str, ...]) -> dict[str, str]:
    """Each paper task (its column in PAPER_TABLE1) -> the task of ours set beside it: one of
    `substitutes` that reproduces the same paper column (gsm8k_cot for GSM8k), else itself."""
    chosen = {TASKS[name].paper_column: name for name in substitutes}
    return {task: chosen.get(TASKS[task].paper_column, task) for task in PAPER_TASKS}


class ReportError(PPAEvalError):
    """A results directory, metrics.json or samples.jsonl that cannot be reported on."""


# --- reading a results directory ------------------------------------------------------------


def _run_name(run_dir: Path, results_dir: Path) -> str:
    relative = run_dir.relative_to(results_dir).as_posix()
    return results_dir.name if relative == "." else relative


def _unfinished_notes(run_dirs: set[Path], finished: set[Path], results_dir: Path) -> list[str]:
    """One line per run whose task directories lack a metrics.json (evaluate still running or killed)."""
    notes = []
    for run_dir in sorted(run_dirs):
        name = _run_name(run_dir, results_dir)
        unfinished = [
            d.name
            for d in sorted(run_dir.iterdir())
            if d.is_dir() and not (d / "metrics.json").exists() and not (d / "manifest.json").exists()
        ]
        if unfinished:
            notes.append(f"{name}: {', '.join(unfinished)} not finished (no metrics.json); left out")
        elif run_dir not in finished:
            notes.append(f"{name}: no task started; left out")
    return notes


def _on_p_curve(metrics: dict, pattern) -> bool:
    """Sink-free PPA, the paper's family (the runs that have a p): the runs a curve over p is drawn from."""
    return metrics["power"] is not None and not pattern.sink


def collect(results_dir: str | Path, kind: str = "graded") -> pd.DataFrame:
    """One row per finished (run, task) of `kind` under results_dir, sorted by pattern (PPA by p,
    window, sink; then PowerAttention), run, task; empty when only tasks of the other kind finished.

    Columns: run (run directory relative to results_dir), task_dir, checkpoint, attention (the
    spec), series (the pattern's series()), p_curve (sink-free PPA), power (Fraction; None
    outside PPA), power_str, window (PPA's; None outside PPA), task, and then
    accuracy, ci_low, ci_high, n and every other metrics.json key as is (kind "graded"), or
    length and its `by_length` entry flattened: token_perplexity, ppl_low, ppl_high, bits_per_byte,
    bpb_low, bpb_high, tokens, bytes, n, one row per (run, task, length) (kind "scored": perplexity).
    Lines about unfinished runs or limited evaluations are in `df.attrs["notes"]`.
    """
    results_dir = Path(results_dir)
    metrics_files = sorted(results_dir.rglob("metrics.json")) if results_dir.is_dir() else []
    if not metrics_files:
        raise ReportError(f"no results under {results_dir}; run ppa-eval evaluate/sweep first")
    rows, runs = [], {}
    for path in metrics_files:
        metrics = read_metrics(path)
        pattern = metrics.pop("pattern")
        run_dir = path.parent.parent
        name = _run_name(run_dir, results_dir)
        identity = (metrics["checkpoint"], metrics["attention"])
        if runs.setdefault(run_dir, identity) != identity:
            described = [f"checkpoint {c!r}, {a}" for c, a in (identity, runs[run_dir])]
            raise ReportError(
                f"{path}: {described[0]} differs from the run's other tasks ({described[1]}); "
                "one run directory holds one checkpoint and pattern"
            )
        if metrics["kind"] != kind:
            continue
        row = {"run": name, "task_dir": str(path.parent), **metrics, "series": pattern.series(),
               "p_curve": _on_p_curve(metrics, pattern),
               "power_str": "" if metrics["power"] is None else str(metrics["power"]), "_order": sort_key(pattern)}
        if kind == "scored":
            rows += [{**row, **_perplexity_cell(length, cell)} for length, cell in row.pop("by_length").items()]
        else:
            low, high = row.pop("ci95")
            rows.append({**row, **row.pop("lm_eval", {}), "ci_low": low, "ci_high": high})
    rows.sort(key=lambda row: (row["_order"], row["run"], row["task"], row.get("length", 0)))
    df = pd.DataFrame(rows).drop(columns="_order", errors="ignore")
    duplicated = df[df.duplicated(["run", "task"], keep=False)] if kind == "graded" and rows else df[:0]
    if not duplicated.empty:
        first = duplicated.iloc[0]
        raise ReportError(
            f"{first.run}: two metrics.json for task {first.task!r}; keep one directory per task"
        )

    run_dirs = set(runs) | {m.parent for m in results_dir.rglob("manifest.json")}
    notes = _unfinished_notes(run_dirs, set(runs), results_dir)
    if "limit" in df:
        for row in df[df["limit"].notna()].drop_duplicates(["run", "task"]).itertuples():
            unit = "documents" if kind == "scored" else "problems"
            notes.append(f"{row.run}/{row.task}: limited to {int(row.limit)} {unit} (limit), n={row.n}")
    df.attrs["notes"] = notes
    return df


def _perplexity_cell(length: str, cell: dict) -> dict:
    return {"length": int(length), "token_perplexity": cell["token_perplexity"],
            "ppl_low": cell["token_perplexity_ci95"][0], "ppl_high": cell["token_perplexity_ci95"][1],
            "bits_per_byte": cell["bits_per_byte"], "bpb_low": cell["bits_per_byte_ci95"][0],
            "bpb_high": cell["bits_per_byte_ci95"][1], "tokens": cell["tokens"], "bytes": cell["bytes"],
            "n": cell["n"]}


# --- paired significance --------------------------------------------------------------------


def paired_significance(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """Each run of `task` against the full-attention (p = 1) run, paired by doc_id.

    Columns: run, attention, pairs (problems both runs scored), b (this run right, full
    wrong), c (this run wrong, full right), p_value (exact McNemar, two-sided).
    """
    runs = df[df["task"] == task]
    full = runs[(runs["power"] == 1) & runs["p_curve"]]
    if full.empty:
        raise ReportError(
            f"no full-attention (p=1) run for {task}; evaluate p=1 to test the others against it"
        )
    if len(full) > 1:
        raise ReportError(
            f"several p=1 runs for {task} ({', '.join(full['run'])}); keep one as the reference"
        )
    reference = _checked_samples(full.iloc[0])
    rows = []
    for run in runs.itertuples():
        ours = _checked_samples(run)
        paired = ours.keys() & reference.keys()
        b = sum(ours[d] and not reference[d] for d in paired)
        c = sum(reference[d] and not ours[d] for d in paired)
        rows.append({"run": run.run, "attention": run.attention,
                     "pairs": len(paired), "b": b, "c": c, "p_value": mcnemar_exact(b, c)})
    return pd.DataFrame(rows)


def _checked_samples(row) -> dict[str, bool]:
    """The run's samples, refused if they do not add up to its metrics.json (else the test and the
    table would describe different data)."""
    path = Path(row.task_dir) / "samples.jsonl"
    samples = read_verdicts(path)
    right = sum(samples.values())
    if len(samples) != row.n or (row.n and not math.isclose(right / row.n, row.accuracy, abs_tol=1e-9)):
        raise ReportError(
            f"{path}: {right} correct of {len(samples)} samples, but metrics.json says accuracy "
            f"{row.accuracy} of n={row.n}; re-run ppa-eval evaluate for this task"
        )
    return samples


# --- tables ---------------------------------------------------------------------------------


def _render(table: pd.DataFrame, fmt: str) -> str:
    """Every cell is already text; tabulate must not re-parse "0.740" into 0.74."""
    if fmt == "md":
        return table.to_markdown(index=False, disable_numparse=True) + "\n"
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "latex":
        return table.to_latex(index=False, escape=True)
    raise ReportError(f"unknown table format {fmt!r}; choose one of {', '.join(TABLE_FORMATS)}")


def power_text(power: Fraction) -> str:
    """The paper's notation: a decimal where it terminates (1/8 -> 0.125), else a fraction (1/3)."""
    rest = power.denominator
    for factor in (2, 5):  # a fraction has a finite decimal iff its denominator is 2^a 5^b
        while rest % factor == 0:
            rest //= factor
    return str(Decimal(power.numerator) / Decimal(power.denominator)) if rest == 1 else str(power)


def attention_type(power: Fraction) -> str:
    """The row label of the paper's Table 1: the kind of attention and its cost O(L^(1+p))."""
    if power == 0:
        return "Sliding Window O(L^1)"
    if power == 1:
        return "Full Attention O(L^2)"
    exponent = power_text(1 + power)
    return f"PPA O(L^{exponent})" if "/" not in exponent else f"PPA O(L^({exponent}))"


def render_table(df: pd.DataFrame, fmt: str = "md", metric: str = "accuracy") -> str:
    """One row per run, in pattern order: accuracy in percent, its 95% CI and n per task, and where
    the runs recorded them, the attention's cost at the task's mean length (patterns.cost): MFLOP
    per generated token, and MiB of cache (or retention state) per sequence.

    `metric` picks another per-problem score instead of our grader's accuracy, e.g. lm-eval's
    `lm_eval_strict_match` (its Wilson interval is computed the same way); "-" where a task lacks it.
    """
    if metric != "accuracy":
        if metric not in df:
            known = sorted(c for c in df.columns if c.startswith("lm_eval_"))
            raise ReportError(f"no metric {metric!r} in these results; choose accuracy or one of: {', '.join(known)}")
        df = df[df[metric].notna()].copy()
        df["accuracy"] = df[metric]
        intervals = [accuracy_ci(round(value * n), n) for value, n in zip(df[metric], df["n"])]
        df["ci_low"], df["ci_high"] = [low for low, _ in intervals], [high for _, high in intervals]
    runs = df.drop_duplicates("run")  # collect sorted df by pattern
    table = pd.DataFrame({"run": list(runs["run"]), "attention": list(runs["attention"])})
    for task in sorted(df["task"].unique(), key=lambda t: (_task_rank(t), t)):
        cells = {row.run: _task_cells(row) for row in df[df["task"] == task].itertuples()}
        for what in ("%", "95% CI", "n", *(COST_CELLS if "cache_bytes" in df else ())):
            table[f"{task} {what}"] = [cells[run][what] if run in cells else "-" for run in table["run"]]
    return _render(table, fmt)


COST_CELLS = ("MFLOP/token", "cache MiB")


def _cost_cells(row) -> dict[str, str]:
    if pd.isna(getattr(row, "cache_bytes", None)):
        return dict.fromkeys(COST_CELLS, "-")
    return {"MFLOP/token": f"{row.attention_flops_per_token / 1e6:,.1f}", "cache MiB": f"{row.cache_bytes / 2**20:,.1f}"}


LONG_CONTEXT_COLUMNS = ["run", "task", "task_dir", "attention", "series", "p_curve", "power", "window", "length",
                        "fraction_of_dense", "accuracy", "ci_low", "ci_high", "n"]


def long_context_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, long-context task, context length), in collect's order, from the
    `by_length` entries of metrics.json; `fraction_of_dense` is the pattern's cost at that length
    (attended pairs over the causal square, as a fraction of dense attention's)."""
    rows = []
    if "by_length" in df:
        for row in df[df["by_length"].notna()].itertuples():
            pattern = parse_spec(row.attention)
            for length, cell in row.by_length.items():
                length = int(length)
                rows.append({"run": row.run, "task": row.task, "task_dir": row.task_dir, "attention": row.attention,
                             "series": row.series, "p_curve": row.p_curve, "power": row.power, "window": row.window,
                             "length": length,
                             "fraction_of_dense": pairs(pattern, length) / dense_pairs(length),
                             "accuracy": cell["accuracy"], "ci_low": cell["ci95"][0], "ci_high": cell["ci95"][1],
                             "n": cell["n"]})
    return pd.DataFrame(rows, columns=LONG_CONTEXT_COLUMNS)


def _cell(row) -> str:
    return f"{100 * row.accuracy:.1f} [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}] ({row.n})"


def render_long_context_table(df: pd.DataFrame, fmt: str = "md") -> str | None:
    """Long-context accuracy by pattern (rows) and context length (columns), per task:
    percent [95% CI] (n). None when the results hold no long-context task."""
    cells = long_context_rows(df)
    if cells.empty:
        return None
    lengths = sorted(cells["length"].unique())
    rows = []
    for (task, run), group in cells.groupby(["task", "run"], sort=False):
        by_length = {r.length: _cell(r) for r in group.itertuples()}
        rows.append({"task": TASKS[task].label if task in TASKS else task, "attention": group.iloc[0].attention,
                     "run": run, **{f"{length} tokens": by_length.get(length, "-") for length in lengths}})
    return _render(pd.DataFrame(rows).sort_values("task", kind="stable"), fmt)


def render_cost_table(df: pd.DataFrame, fmt: str = "md") -> str | None:
    """Long-context accuracy against cost, for comparing pattern families: one row per (task,
    length, pattern), cheapest first, with the pattern's attended pairs as a percentage of dense.
    None unless the results hold long-context runs of more than one series."""
    cells = long_context_rows(df)
    if cells.empty or cells["series"].nunique() < 2:
        return None
    cells = cells.sort_values(["task", "length", "fraction_of_dense", "series"], kind="stable",
                              key=lambda column: column.map(_task_rank) if column.name == "task" else column)
    table = pd.DataFrame({"task": [TASKS[t].label for t in cells["task"]], "tokens": cells["length"].astype(str),
                          "% of dense": [f"{100 * f:.2f}" for f in cells["fraction_of_dense"]],
                          "series": cells["series"], "attention": cells["attention"],
                          "accuracy % [95% CI] (n)": [_cell(r) for r in cells.itertuples()]})
    return _render(table, fmt)


def render_perplexity_table(cells: pd.DataFrame, fmt: str = "md") -> str | None:
    """Perplexity by pattern (rows) and token position bucket (columns, ppa_eval/perplexity.py):
    bits per byte [95% CI] and token perplexity. None when no perplexity task finished."""
    if cells.empty:
        return None
    lengths = sorted(cells["length"].unique())
    rows = []
    for (task, run), group in cells.groupby(["task", "run"], sort=False):
        by_length = {r.length: r for r in group.itertuples()}
        row = {"task": TASKS[task].label if task in TASKS else task, "attention": group.iloc[0].attention, "run": run}
        for length in lengths:
            r = by_length.get(length)
            row[f"{length} bits/byte [95% CI]"] = f"{r.bits_per_byte:.3f} [{r.bpb_low:.3f}, {r.bpb_high:.3f}]" if r else "-"
            row[f"{length} ppl"] = f"{r.token_perplexity:.2f}" if r else "-"
        rows.append({**row, "documents": str(group.iloc[0].n)})
    return _render(pd.DataFrame(rows), fmt)


def render_tables(df: pd.DataFrame, fmt: str = "md", metric: str = "accuracy",
                  perplexity: pd.DataFrame | None = None) -> str:
    """Every table a results directory has: `metric` per run and task, then long context by length,
    then long context against cost when several pattern families were run, then `perplexity`
    (collect's perplexity rows) by position."""
    tables = [render_table(df, fmt, metric)] if not df.empty else []
    tables += [table for table in (render_long_context_table(df, fmt), render_cost_table(df, fmt)) if table]
    if perplexity is not None:
        tables += [table for table in (render_perplexity_table(perplexity, fmt),) if table]
    return "\n".join(tables)


def _task_cells(row) -> dict[str, str]:
    return {"%": f"{100 * row.accuracy:.1f}",
            "95% CI": f"[{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]",
            "n": str(row.n), **_cost_cells(row)}


def paper_table() -> pd.DataFrame:
    """The paper's Table 1 (ppa_eval/resources/paper_table1.csv) as printed in the paper: every cell is its text ("0.740" stays)."""
    return pd.read_csv(PAPER_TABLE1, dtype=str, keep_default_na=False)


def render_paper_table(fmt: str = "md") -> str:
    """The paper's Table 1 in its own layout."""
    paper = paper_table()
    table = pd.DataFrame({
        "Attention type": paper["attention_type"] + " " + paper["complexity"],
        "Power": paper["power"],
        **{TASKS[column].paper_column: paper[column] for column in PAPER_TASKS},
    })
    return _render(table, fmt)


def _one_run_per_power(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """The sink-free PPA runs of `task` indexed by power; the paper has one number per p, so we need one run."""
    runs = df[(df["task"] == task) & df["p_curve"]]
    repeated = runs[runs["power"].duplicated(keep=False)]
    if not repeated.empty:
        power = repeated["power"].iloc[0]
        names = ", ".join(repeated[repeated["power"] == power]["run"])
        raise ReportError(
            f"several {task} runs at p={power} ({names}); compare one run per power with the paper "
            "(e.g. one window: point at a directory that holds only those runs)"
        )
    return runs.set_index("power")


def render_reproduction(df: pd.DataFrame, fmt: str = "md", substitutes: tuple[str, ...] = ()) -> str:
    """The paper's Table 1 with our accuracy, the paper's, ours - paper, and McNemar p vs our p = 1;
    `substitutes` are our tasks set in the paper columns they reproduce instead of the paper's own.

    Rows are the union of the paper's powers and ours, by power; "-" marks a missing number.
    Ours are rounded to the paper's three decimals before subtracting, so each difference is
    exactly the difference of the two printed numbers.
    """
    paper = paper_table()
    paper.index = paper["power"].map(parse_power)
    ours_tasks = _our_tasks(substitutes)  # paper column -> our task
    ours = {column: _one_run_per_power(df, task) for column, task in ours_tasks.items()}
    p_values = {column: _p_values_or_empty(df, task) for column, task in ours_tasks.items()}

    powers = sorted(set(paper.index).union(*(runs.index for runs in ours.values())))
    table = pd.DataFrame({"Attention type": [attention_type(p) for p in powers],
                          "Power": [power_text(p) for p in powers]})
    for column in PAPER_TASKS:
        heading = TASKS[column].paper_column
        our_cells, paper_cells, differences, significance = [], [], [], []
        for p in powers:
            mine = round(ours[column].accuracy[p], 3) if p in ours[column].index else None
            theirs = paper.loc[p, column] if p in paper.index else None
            our_cells.append("-" if mine is None else f"{mine:.3f}")
            paper_cells.append("-" if theirs is None else theirs)
            differences.append("-" if None in (mine, theirs) else f"{mine - float(theirs):+.3f}")
            run = ours[column].run[p] if mine is not None else None
            is_reference = p == 1 and mine is not None
            significance.append("ref" if is_reference else _format_p(p_values[column].get(run)))
        table[f"{heading} ours"] = our_cells
        table[f"{heading} paper"] = paper_cells
        table[f"{heading} diff"] = differences
        table[f"{heading} McNemar p vs p=1"] = significance
    return _render(table, fmt)


def _p_values_or_empty(df: pd.DataFrame, task: str) -> dict[str, float]:
    """run -> McNemar p against our p = 1 run; empty (shown as "-") when there is no p = 1 run."""
    if not ((df["task"] == task) & (df["power"] == 1) & df["p_curve"]).any():
        return {}
    tests = paired_significance(df, task)
    return dict(zip(tests["run"], tests["p_value"]))


def _format_p(p_value: float | None) -> str:
    return "-" if p_value is None else f"{p_value:.3g}"


# --- the S-curve ----------------------------------------------------------------------------


def plot_s_curve(df: pd.DataFrame, path: str | Path, substitutes: tuple[str, ...] = ()) -> Path:
    """Accuracy against p per task, ours (solid, 95% CI bars) over the paper's (dashed), like the
    paper's Figure 3, with horizontal lines at the sliding-window (p=0) and full (p=1) accuracies."""
    plt = _pyplot()
    paper = paper_table()
    paper_power = paper["power"].map(lambda p: float(parse_power(p)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharex=True)
    levels = ((0, ":", "p=0 (sliding window)"), (1, "-.", "p=1 (full attention)"))
    for ax, (column, task) in zip(axes, _our_tasks(substitutes).items()):
        heading = TASKS[column].paper_column
        paper_acc = paper[column].astype(float)
        ax.plot(paper_power, paper_acc, "--s", color="tab:gray", markersize=4, label="paper (Huang 2026)")
        for p, style, what in levels:
            ax.axhline(paper_acc[paper_power == p].iloc[0], color="tab:gray", linestyle=style, linewidth=0.8,
                       label=f"paper {what}")
        runs = _one_run_per_power(df, task)
        if not runs.empty:
            error = _error_bars(runs)
            ax.errorbar([float(p) for p in runs.index], runs.accuracy, yerr=error, fmt="-o", color="tab:blue",
                        capsize=3, label="ours (95% CI)")
            for p, style, what in levels:
                if p in runs.index:
                    ax.axhline(runs.accuracy[p], color="tab:blue", linestyle=style, linewidth=0.8,
                               label=f"ours {what}")
        ax.set_title(heading if task == column else f"{heading} (ours: {task})")
        ax.set_xlabel("power p (attended keys grow as $L^{1+p}$)")
        ax.set_ylabel("accuracy")
        eighths = [Fraction(i, 8) for i in range(9)]
        ax.set_xticks([float(p) for p in eighths], [power_text(p) for p in eighths])
        ax.grid(alpha=0.3)
    # One legend below both panels, so it never hides a point; a label seen in both is listed once.
    handles = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return _save(fig, path)


# --- long context: S-curves and depth x length heatmaps ---------------------------------------


def p_curve_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """The rows a curve over p is drawn from: sink-free PPA at one window, the one most runs with
    0 < p < 1 share (p = 1 is full attention at any window, so it stays)."""
    cells = cells[cells["p_curve"].astype(bool)]
    partial = cells[(cells["power"] > 0) & (cells["power"] < 1)]
    if partial.empty:
        return cells
    return cells[(cells["window"] == partial["window"].mode()[0]) | (cells["power"] == 1)]


def plot_long_context_s_curves(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Accuracy against p (sink-free PPA runs at one window), one panel per long-context task, one
    line per context length, with 95% CIs."""
    cells = p_curve_rows(long_context_rows(df))
    if cells.empty:
        return None
    plt = _pyplot()
    tasks = sorted(cells["task"].unique(), key=_task_rank)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for length, group in cells[cells["task"] == task].groupby("length"):
            group = group.sort_values("power")
            x = [float(p) for p in group["power"]]
            error = _error_bars(group)
            ax.errorbar(x, group.accuracy, yerr=error, fmt="-o", capsize=3, markersize=4, label=f"{length} tokens")
        ax.set_title(TASKS[task].label)
        ax.set_xlabel("power p (attended keys grow as $L^{1+p}$)")
        ax.set_ylabel("accuracy (95% CI)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_perplexity(cells: pd.DataFrame, path: str | Path) -> Path | None:
    """Bits per byte and token perplexity against p (sink-free PPA runs at one window), one line per
    position bucket, with 95% CIs: the perplexity counterpart of the accuracy S-curves."""
    cells = p_curve_rows(cells) if not cells.empty else cells
    if cells.empty:
        return None
    plt = _pyplot()
    fig, (bits, tokens) = plt.subplots(1, 2, figsize=(10.4, 4.2))
    labels = {high: f"{low + 1}-{high}" for low, high in bucket_bounds(sorted(cells["length"].unique()))}
    for length, group in cells.groupby("length"):
        group = group.sort_values("power")
        x = [float(p) for p in group["power"]]
        label = f"tokens {labels[length]}"
        bits.errorbar(x, group.bits_per_byte, yerr=_error_bars(group, "bits_per_byte", "bpb_low", "bpb_high"),
                      fmt="-o", capsize=3, markersize=4, label=label)
        tokens.errorbar(x, group.token_perplexity, yerr=_error_bars(group, "token_perplexity", "ppl_low", "ppl_high"),
                        fmt="-o", capsize=3, markersize=4, label=label)
    for ax, what in ((bits, "bits per byte (95% CI)"), (tokens, "token perplexity (95% CI)")):
        ax.set_xlabel("power p (attended keys grow as $L^{1+p}$)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    tokens.set_yscale("log")
    fig.suptitle("perplexity by token position against p")
    fig.tight_layout()
    return _save(fig, path)



def _p_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Long-context cells of the curve over p, indexed by (power, task, length)."""
    return p_curve_rows(long_context_rows(df)).set_index(["power", "task", "length"])


def render_against_baseline(df: pd.DataFrame, baseline: pd.DataFrame, fmt: str = "md") -> str | None:
    """Long context in the layout of the paper's Table 1: a row per p (Attention type, Power), a
    column per task and context length holding accuracy % [95% CI], and beside each the baseline's
    accuracy at the same p (for fine-tuned checkpoints: the base model training-free). None when
    the results hold no long-context task."""
    ours, theirs = _p_cells(df), _p_cells(baseline)
    if ours.empty:
        return None
    powers = sorted(ours.index.get_level_values("power").unique())
    columns = sorted({(task, length) for _, task, length in ours.index},
                     key=lambda cell: (_task_rank(cell[0]), cell[1]))
    table = pd.DataFrame({"Attention type": [attention_type(p) for p in powers],
                          "Power": [power_text(p) for p in powers]})
    for task, length in columns:
        heading = f"{TASKS[task].label} {length // 1024}k" if length % 1024 == 0 else f"{TASKS[task].label} {length}"
        table[heading] = [_cell(ours.loc[(p, task, length)]) if (p, task, length) in ours.index else "-"
                          for p in powers]
        table[f"{heading} baseline"] = [f"{100 * theirs.loc[(p, task, length)].accuracy:.1f}"
                                        if (p, task, length) in theirs.index else "-" for p in powers]
    return _render(table, fmt)


def plot_against_baseline(df: pd.DataFrame, baseline: pd.DataFrame, path: str | Path) -> Path | None:
    """Accuracy against p, a panel per long-context task, a colour per context length: the results
    solid with 95% CIs, the baseline dashed; labelled for what it was made for, fine-tuned
    checkpoints beside their base model training-free."""
    ours, theirs = p_curve_rows(long_context_rows(df)), p_curve_rows(long_context_rows(baseline))
    if ours.empty:
        return None
    plt = _pyplot()
    tasks = sorted(ours["task"].unique(), key=_task_rank)
    lengths = sorted(ours["length"].unique())
    colours = dict(zip(lengths, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.6 * len(tasks), 4.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for length in lengths:
            mine = ours[(ours["task"] == task) & (ours["length"] == length)].sort_values("power")
            ax.errorbar([float(p) for p in mine["power"]], mine.accuracy, yerr=_error_bars(mine), fmt="-o",
                        color=colours[length], capsize=3, markersize=4, label=f"{length} tokens, fine-tuned")
            other = theirs[(theirs["task"] == task) & (theirs["length"] == length)].sort_values("power")
            if not other.empty:
                ax.plot([float(p) for p in other["power"]], other.accuracy, "--", color=colours[length], alpha=0.7,
                        label=f"{length} tokens, training-free")
        ax.set_title(TASKS[task].label)
        ax.set_xlabel("power p (attended keys grow as $L^{1+p}$)")
        ax.set_ylabel("accuracy (95% CI)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def plot_equal_cost(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Long-context accuracy against cost (attended pairs as a fraction of dense, log scale), one
    line per series (family and sink), a panel per task and context length: pattern families
    compared at equal cost. None unless the results hold long-context runs of several series."""
    cells = long_context_rows(df)
    if cells.empty or cells["series"].nunique() < 2:
        return None
    plt = _pyplot()
    tasks = sorted(cells["task"].unique(), key=_task_rank)
    lengths = sorted(cells["length"].unique())
    fig, axes = plt.subplots(len(tasks), len(lengths), figsize=(4.2 * len(lengths), 3.6 * len(tasks)),
                             squeeze=False, sharey=True)
    for task_axes, task in zip(axes, tasks):
        for ax, length in zip(task_axes, lengths):
            here = cells[(cells["task"] == task) & (cells["length"] == length)]
            for name, group in here.groupby("series", sort=False):
                group = group.sort_values("fraction_of_dense")
                ax.errorbar(group.fraction_of_dense, group.accuracy, yerr=_error_bars(group), fmt="-o", capsize=3,
                            markersize=4, label=name)
            _cost_axis(ax)
            ax.set_title(f"{TASKS[task].label}, {length:,} tokens", fontsize=9)
            ax.set_xlabel("attended pairs, % of dense causal attention")
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
        task_axes[0].set_ylabel("accuracy (95% CI)")
    handles = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 6), fontsize=8.5,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06 if len(tasks) > 1 else 0.1, 1, 1))
    return _save(fig, path)


def _cost_axis(ax) -> None:
    """A log axis of costs labelled in percent, with as many labels as its range has room for
    (matplotlib's own minor labels, 3x10^-1 4x10^-1 ..., run together on a narrow range)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    low, high = ax.get_xlim()
    decades = math.log10(high / low)
    ax.xaxis.set_major_locator(LogLocator(subs=range(1, 10) if decades < 0.5 else (1, 2, 5) if decades < 1.5 else (1,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{100 * value:.3g}%"))
    ax.xaxis.set_minor_formatter(NullFormatter())


DEPTH_BINS = 10


def plot_depth_heatmaps(df: pd.DataFrame, directory: str | Path) -> list[Path]:
    """One PNG per run with long-context tasks: accuracy by needle depth (rows) and context length
    (columns), a panel per task, read from the samples (each holds its length and depth)."""
    cells = long_context_rows(df)
    paths = []
    plt = _pyplot()
    for run, runs in cells.groupby("run", sort=False):
        tasks = sorted(runs["task"].unique(), key=_task_rank)
        title = [run, runs.iloc[0].attention]
        # wide enough for the title (about 0.07 inch a character at 9 points); constrained layout keeps
        # the depth labels inside the picture and clear of the panel to their left
        width = max(4.6 * len(tasks), 0.07 * max(map(len, title)) + 0.5)
        fig, axes = plt.subplots(1, len(tasks), figsize=(width, 4.2), squeeze=False, layout="constrained")
        for ax, task in zip(axes[0], tasks):
            samples = pd.DataFrame(read_samples(Path(runs[runs["task"] == task].iloc[0].task_dir) / "samples.jsonl"))
            # depths in tenths, so that 40 problems per length make 10 rows of 4, not 40 rows of 1
            samples["depth_bin"] = (samples["depth"] * DEPTH_BINS).astype(int).clip(upper=DEPTH_BINS - 1)
            grid = samples.pivot_table(index="depth_bin", columns="context_length", values="correct", aggfunc="mean")
            image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
            ax.set_yticks(range(len(grid.index)), [f"{b / DEPTH_BINS:.1f}-{(b + 1) / DEPTH_BINS:.1f}" for b in grid.index])
            ax.set_xlabel("context length (tokens)")
            ax.set_ylabel("depth of the answer in the context")
            ax.set_title(TASKS[task].label)
        fig.suptitle("\n".join(title), fontsize=9)
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
        paths.append(_save(fig, Path(directory) / f"heatmap_{run.replace('/', '_')}.png"))
    return paths


def write_report(results_dir: str | Path, baseline_dir: str | Path | None = None) -> tuple[str, list[Path]]:
    """Write every table (md, latex: one file each; csv: one file per table) and plot of a results
    directory into it; returns the markdown tables and the files written. With `baseline_dir` (e.g.
    the training-free sweep of the checkpoints' base model) also the long-context table and S-curve
    beside it (table_vs_baseline.*, s_curve_vs_baseline.png)."""
    results_dir = Path(results_dir)
    df, perplexity = collect(results_dir), collect(results_dir, "scored")
    baseline = collect(baseline_dir) if baseline_dir is not None else None
    tables = {"table.md": render_tables(df, "md", perplexity=perplexity),
              "table.tex": render_tables(df, "latex", perplexity=perplexity),
              # a CSV file holds one table, so that any CSV reader takes it
              "table.csv": render_table(df, "csv") if not df.empty else None,
              "table_long_context.csv": render_long_context_table(df, "csv"),
              "table_cost.csv": render_cost_table(df, "csv"),
              "table_perplexity.csv": render_perplexity_table(perplexity, "csv")}
    if baseline is not None:
        tables |= {f"table_vs_baseline.{suffix}": render_against_baseline(df, baseline, fmt)
                   for fmt, suffix in (("md", "md"), ("csv", "csv"), ("latex", "tex"))}
    written = []
    for name, text in tables.items():
        if text is not None:
            (results_dir / name).write_text(text)
            written.append(results_dir / name)
    plots = (plot_long_context_s_curves(df, results_dir / "s_curve_long_context.png"),
             plot_perplexity(perplexity, results_dir / "perplexity.png"),
             plot_equal_cost(df, results_dir / "equal_cost.png"),
             plot_against_baseline(df, baseline, results_dir / "s_curve_vs_baseline.png") if baseline is not None
             else None)
    written += [plot for plot in plots if plot] + plot_depth_heatmaps(df, results_dir)
    return tables["table.md"], written


def _error_bars(rows: pd.DataFrame, value: str = "accuracy", low: str = "ci_low",
                high: str = "ci_high") -> list[pd.Series]:
    """Distances from each point (the `value` column) to its interval's ends (`low`, `high`); at 0
    or 1 the Wilson bound can land a rounding error inside the point, which matplotlib refuses as a
    negative length."""
    return [(rows[value] - rows[low]).clip(lower=0), (rows[high] - rows[value]).clip(lower=0)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    _pyplot().close(fig)
    return path
