"""`acckv eval`'s summary for people, in tables that fit 80 columns with no cell cut to `…`.

By default one table of COMPACT columns; with `--report full` every column of summary.csv, in groups that each
fit, after the same keys. Fractions are printed as percentages (88.9), as summary.md prints them.
"""

from __future__ import annotations

from rich.table import Table

from acckv_cli.evaluation.summary import COLUMNS
from acckv_cli.methods.budget import Budget
from acckv_cli.terminal import new_table

KEYS = ("suite", "protocol", "method", "budget")  # `suite` only when SynthAVQA suites were run
COMPACT = (*KEYS, "media_kept", "choice", "first_word", "agreement", "kl")
# A column no group names (a family of a new benchmark, a new metric) joins the first group.
FULL_GROUPS = (("accuracy", ("choice", "unparsed", "first_word", "exact", "normalised")),
               ("cache", ("n", "errors", "media_kept", "kv_kept", "evidence_kept", "kept_time")),
               ("agreement with the full cache", ("agreement", "kl")))
HEADERS = {"media_kept": "media kept %", "kv_kept": "KV kept %", "first_word": "first word %", "exact": "exact %",
           "normalised": "normalised %", "choice": "choice %", "agreement": "agree %", "kl": "KL",
           "evidence_kept": "evidence kept %", "kept_time": "kept time"}
_AS_IS = ("n", "errors", "unparsed", "suite", "protocol", "method", "family")
CAPTION = "% of the questions; agree: first answer token = the full cache's; --report full: all columns"


def summary_tables(summary: list[dict], title: str, full: bool = False) -> list[Table]:
    """The summary as Rich tables: one of COMPACT columns, or with `full` one per group of FULL_GROUPS."""
    if not full:
        table = _table(summary, title, COMPACT)
        table.caption = CAPTION
        return [table]
    grouped = {c for _, cols in FULL_GROUPS for c in cols} | set(KEYS)
    extra = tuple(dict.fromkeys(c for c in [*COLUMNS, *(k for e in summary for k in e)] if c not in grouped))
    groups = [(name, cols + (extra if i == 0 else ())) for i, (name, cols) in enumerate(FULL_GROUPS)]
    return [_table(summary, f"{title}: {name}", (*KEYS, *cols)) for name, cols in groups
            if _present(summary, cols)]


def _present(summary: list[dict], columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if any(e.get(c) is not None for e in summary)]


def _table(summary: list[dict], title: str, columns: tuple[str, ...]) -> Table:
    columns = _present(summary, columns)
    table = new_table(title, *(HEADERS.get(c, f"{c} %") if c not in _AS_IS and c != "budget" else c
                               for c in columns), left=("suite", "protocol", "method"))
    for e in summary:
        table.add_row(*[cell(c, e.get(c)) for c in columns])
    return table


def cell(column: str, value) -> str:
    """One summary value as people read it: fractions as percentages (88.9), KL with 4 decimals, the budget as
    `20 %` or `160 tok`."""
    if value is None:
        return "–"
    if column == "budget":
        budget = Budget.parse(str(value))
        return f"{100 * budget.value:g} %" if budget.is_ratio else f"{int(budget.value)} tok"
    if column in _AS_IS:
        return str(value)
    if column == "kl":
        return f"{value:.4f}"
    if column == "kept_time":
        return f"{value:.2f}"
    return f"{100 * value:.1f}"
