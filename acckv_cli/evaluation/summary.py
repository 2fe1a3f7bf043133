"""`acckv eval`'s summaries: rows of results.jsonl → one row per (protocol, method, budget), written as CSV,
JSON and Markdown, and plotted (accuracy against budget)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.table import Table

from acckv_cli.methods.budget import Budget
from acckv_cli.terminal import new_table

METRICS = ("first_word", "exact", "agreement", "kl")


def summarise(rows: list[dict]) -> list[dict]:
    """Per (protocol, method, budget): accuracy per family and overall, agreement and KL with the full cache."""
    groups: dict[tuple[str, str, float | int], list[dict]] = {}
    for row in rows:  # budgets as numbers, also from rows written when they were strings ("0.2")
        groups.setdefault((row["protocol"], row["method"], Budget.parse(str(row["budget"])).number), []).append(row)
    out = []
    for (protocol, method, budget), group in groups.items():
        ok = [r for r in group if "error" not in r]
        entry = {"protocol": protocol, "method": method, "budget": budget, "n": len(group),
                 "errors": len(group) - len(ok), "kv_kept": _mean(r["kv_kept"] for r in ok),
                 "media_kept": _mean(r["media_kept"] for r in ok)}
        scored = [r for r in ok if "first_word_correct" in r]
        if scored:
            for family in sorted({r["family"] for r in scored if r.get("family")}):
                entry[family] = _mean(float(r["first_word_correct"]) for r in scored if r.get("family") == family)
            entry["first_word"] = _mean(float(r["first_word_correct"]) for r in scored)
            entry["exact"] = _mean(float(r["exact_correct"]) for r in scored)
        entry["agreement"] = _mean(float(r["first_token_agrees"]) for r in ok)
        entry["kl"] = _mean(r["first_token_kl"] for r in ok)
        for key in ("evidence_kept", "kept_time"):
            values = [r[key] for r in ok if r.get(key) is not None]
            if values:
                entry[key] = _mean(values)
        out.append(entry)
    return sorted(out, key=lambda e: (e["protocol"], e["method"] != "full", e["method"],
                                      -float(e["budget"])))


def _mean(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


COLUMNS = ("protocol", "method", "budget", "n", "errors", "media_kept", "kv_kept", "audio", "video", "alignment",
           "first_word", "exact", "agreement", "kl", "evidence_kept", "kept_time")


def write_summary(summary: list[dict], out_dir: Path) -> None:
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "summary.md").write_text(summary_markdown(summary))
    columns = sorted({k for e in summary for k in e}, key=_column_order)
    with (out_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(summary)


def summary_markdown(summary: list[dict]) -> str:
    """The summary as a Markdown table (what the README shows): percentages with one decimal, KL with 4."""
    columns = present_columns(summary, COLUMNS)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for e in summary:
        cells = [f"`{e[c]}`" if c == "method" else cell(c, e.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# What the terminal shows, in tables that fit 80 columns: COMPACT by default; with `--report full` every
# column, in groups after the same three keys (summary.csv and summary.md hold them all in one table).
KEYS = ("protocol", "method", "budget")
COMPACT = (*KEYS, "media_kept", "first_word", "agreement", "kl")
FULL_GROUPS = (("accuracy", ("first_word", "exact", "audio", "video", "alignment")),
               ("cache", ("n", "errors", "media_kept", "kv_kept", "evidence_kept", "kept_time")),
               ("agreement with the full cache", ("agreement", "kl")))
HEADERS = {"media_kept": "media kept %", "kv_kept": "KV kept %", "first_word": "first word %", "exact": "exact %",
           "agreement": "agree %", "kl": "KL", "evidence_kept": "evidence kept %", "kept_time": "kept time",
           "audio": "audio %", "video": "video %", "alignment": "align. %"}
_AS_IS = ("n", "errors", "protocol", "method", "budget")


def present_columns(summary: list[dict], columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if any(e.get(c) is not None for e in summary)]


def cell(column: str, value) -> str:
    """One summary value as people read it: fractions as percentages (88.9), KL with 4 decimals."""
    if value is None:
        return "–"
    if column in _AS_IS:
        return str(value)
    if column == "kl":
        return f"{value:.4f}"
    if column == "kept_time":
        return f"{value:.2f}"
    return f"{100 * value:.1f}"


def summary_tables(summary: list[dict], title: str, full: bool = False) -> list[Table]:
    """Rich tables of the summary: COMPACT (one table), or with `full` every column, grouped (FULL_GROUPS;
    a column no group names, e.g. a new metric, joins the first group)."""
    if not full:
        table = _table(summary, title, COMPACT)
        table.caption = "% of the questions; agree: first answer token = the full cache's; --report full: all columns"
        return [table]
    grouped = {c for _, cols in FULL_GROUPS for c in cols}
    extra = tuple(c for c in COLUMNS if c not in grouped and c not in KEYS)
    groups = [(name, cols + (extra if i == 0 else ())) for i, (name, cols) in enumerate(FULL_GROUPS)]
    return [_table(summary, f"{title}: {name}", (*KEYS, *cols)) for name, cols in groups
            if len(present_columns(summary, cols))]


def _table(summary: list[dict], title: str, columns: tuple[str, ...]) -> Table:
    columns = present_columns(summary, columns)
    table = new_table(title, *(HEADERS.get(c, c) for c in columns), left=("protocol", "method"))
    for e in summary:
        table.add_row(*[_budget_cell(e[c]) if c == "budget" else cell(c, e.get(c)) for c in columns])
    return table


def _budget_cell(value) -> str:
    budget = Budget(float(value))
    return f"{100 * budget.value:g} %" if budget.is_ratio else f"{int(budget.value)} tok"


def _column_order(name: str) -> tuple[int, str]:
    return (COLUMNS.index(name) if name in COLUMNS else len(COLUMNS), name)


def plot_summary(summary: list[dict], path: Path, metric: str = "first_word") -> None:
    """Accuracy (or agreement) versus media kept, one panel per protocol, one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = sorted({e["protocol"] for e in summary})
    fig, axes = plt.subplots(1, len(protocols), figsize=(6.5 * len(protocols), 4.5), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    methods = sorted({e["method"] for e in summary if e["method"] != "full"})
    for ax, protocol in zip(axes[0], protocols):
        by_method: dict[str, list[tuple[float, float]]] = {}
        for e in summary:
            if e["protocol"] != protocol or e.get(metric) is None:
                continue
            if e["method"] == "full":
                ax.axhline(e[metric] * 100, color="black", linestyle="--", label="full cache")
                continue
            by_method.setdefault(e["method"], []).append((e["media_kept"] or 0.0, e[metric]))
        for method, points in sorted(by_method.items()):
            i = methods.index(method)
            points.sort()
            ax.plot([p[0] * 100 for p in points], [p[1] * 100 for p in points], marker="os^D"[i % 4],
                    color=colours[i % len(colours)], linewidth=2.5 if method == "acckv" else 1.2, label=method)
        ax.set_xlabel("media entries kept (% of the prompt's media, measured)")
        ax.set_ylabel({"first_word": "first-word accuracy (%)", "agreement": "first token = full cache's (%)"}
                      .get(metric, metric))
        ax.set_title(f"protocol: {protocol}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # every row an error: nothing to label
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
