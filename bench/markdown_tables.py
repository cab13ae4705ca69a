"""The benchmarks' markdown: one table per section, with only the columns some row of it fills."""

from __future__ import annotations


def section_tables(rows: list[dict], columns: tuple[str, ...], errors: list[str]) -> list[str]:
    """Markdown lines: `## section` and its table for each section in order of first appearance,
    then the errors (a failed row is reported, not fatal)."""
    lines = []
    for section in dict.fromkeys(r["section"] for r in rows):
        part = [r for r in rows if r["section"] == section]
        keys = [k for k in columns if any(r.get(k) is not None for r in part)]
        lines += [f"## {section}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in part]
        lines.append("")
    if errors:
        lines += ["## errors", ""] + [f"- {e}" for e in errors] + [""]
    return lines


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2e}" if value < 1e-3 else f"{value:.3g}"
    return str(value)
