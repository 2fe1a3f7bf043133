"""`acckv eval`'s summaries: rows of results.jsonl → one row per (protocol, method, budget), written as CSV,
JSON and Markdown, and plotted (accuracy against budget); and one row per (protocol, method, budget, family)
for benchmarks whose categories are too many for columns (`summary_families.csv/md`).

Accuracy of a row: `choice` for multiple-choice questions (the letter read, or the option's text, is the
truth's; an unparseable answer is wrong and also counted in `unparsed`), the first word for free answers
(with `exact` and `normalised` beside it). The family columns use each question's own kind of accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from acckv_cli.methods.budget import Budget

METRICS = ("choice", "first_word", "exact", "normalised", "agreement", "kl")


def row_correct(row: dict) -> float:
    """A scored row's accuracy: the choice for multiple choice, the first word for a free answer."""
    return float(row["choice_correct"] if "choice_correct" in row else row["first_word_correct"])


def _scores(ok: list[dict]) -> dict:
    """Accuracy fields of a group of rows without errors (only those its rows have), agreement and KL."""
    out: dict = {}
    choice = [r for r in ok if "choice_correct" in r]
    if choice:
        out["choice"] = _mean(float(r["choice_correct"]) for r in choice)
        out["unparsed"] = sum(r.get("choice") is None for r in choice)  # wrong, and counted apart
    free = [r for r in ok if "first_word_correct" in r]
    if free:
        out["first_word"] = _mean(float(r["first_word_correct"]) for r in free)
        out["exact"] = _mean(float(r["exact_correct"]) for r in free)
        normalised = [float(r["normalised_correct"]) for r in free if "normalised_correct" in r]
        if normalised:  # absent from results written before the normalised match existed
            out["normalised"] = _mean(normalised)
    out["agreement"] = _mean(float(r["first_token_agrees"]) for r in ok)
    out["kl"] = _mean(r["first_token_kl"] for r in ok)
    return out


def summarise(rows: list[dict]) -> list[dict]:
    """Per (protocol, method, budget): accuracy per family and overall, agreement and KL with the full cache."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:  # budgets as numbers, also from rows written when they were strings ("0.2")
        groups.setdefault((row.get("suite"), row["protocol"], row["method"], budget_number(row["budget"])),
                          []).append(row)
    out = []
    for (suite, protocol, method, budget), group in groups.items():
        ok = [r for r in group if "error" not in r]
        entry = {**({"suite": suite} if suite else {}), "protocol": protocol, "method": method, "budget": budget,
                 "n": len(group),
                 "errors": len(group) - len(ok), "kv_kept": _mean(r["kv_kept"] for r in ok),
                 "media_kept": _mean(r["media_kept"] for r in ok)}
        scored = [r for r in ok if "first_word_correct" in r or "choice_correct" in r]
        for family in sorted({r["family"] for r in scored if r.get("family")}):
            entry[family] = _mean(row_correct(r) for r in scored if r.get("family") == family)
        entry.update(_scores(ok))
        for key in ("evidence_kept", "kept_time"):
            values = [r[key] for r in ok if r.get(key) is not None]
            if values:
                entry[key] = _mean(values)
        out.append(entry)
    return sorted(out, key=lambda e: (SUITE_ORDER.get(e.get("suite"), 9), e["protocol"], e["method"] != "full",
                                      e["method"], -float(Budget.parse(e["budget"]).value)))


SUITE_ORDER = {None: 0, "core": 1, "sparse": 2, "long": 3}
CALIBRATION_BUDGETS = ("0.1", "0.05")


def calibration(summary: list[dict]) -> list[str]:
    """Per suite and protocol, what random eviction and the evidence oracle keep of the full cache's accuracy:
    the yardstick's reading, one line each ("random keeps 88.9 % of the full cache at 10 % and 70.0 % at 5 %;
    oracle 98.0 % at 5 %"). Only settings the run measured are named."""
    lines = []
    keys = sorted({(e.get("suite"), e["protocol"]) for e in summary}, key=lambda k: (SUITE_ORDER.get(k[0], 9), k[1]))
    for suite, protocol in keys:
        rows = [e for e in summary if e.get("suite") == suite and e["protocol"] == protocol]
        full = next((e.get("first_word") for e in rows if e["method"] == "full"), None)
        if not full:
            continue

        def kept(method: str, budget: str) -> float | None:
            value = next((e.get("first_word") for e in rows if e["method"] == method
                          and Budget.parse(e["budget"]).value == Budget.parse(budget).value), None)
            return None if value is None else 100 * value / full

        parts = []
        for method in ("random", "oracle"):
            shares = [(b, kept(method, b)) for b in CALIBRATION_BUDGETS]
            shares = [f"{v:.1f} % at {float(b) * 100:g} %" for b, v in shares if v is not None]
            if shares:
                parts.append(f"{method} keeps {' and '.join(shares)} of the full cache's accuracy")
        if parts:
            where = f"{suite or 'manifest'}, {protocol}"
            lines.append(f"{where}: {'; '.join(parts)} (full cache {100 * full:.1f} %)")
    return lines


def summarise_families(rows: list[dict]) -> list[dict]:
    """Per (protocol, method, budget, family): n, errors, accuracy, agreement and KL — the per-category report
    of a benchmark (WorldSense has 26 task types: too many for columns of the main summary)."""
    groups: dict[tuple[str, str, float | int, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["protocol"], row["method"], budget_number(row["budget"]), row.get("family") or "–"),
                          []).append(row)
    out = []
    for (protocol, method, budget, family), group in groups.items():
        ok = [r for r in group if "error" not in r]
        out.append({"protocol": protocol, "method": method, "budget": budget, "family": family, "n": len(group),
                    "errors": len(group) - len(ok), **(_scores(ok) if ok else {})})
    return sorted(out, key=lambda e: (e["protocol"], e["family"], e["method"] != "full", e["method"],
                                      -float(Budget.parse(e["budget"]).value)))


def budget_number(value: float | int | str) -> float | int:
    """A row's budget as a number: 0.2, or a count 160 (rows written before issue 26 hold strings)."""
    return Budget.parse(str(value)).number


def _mean(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


COLUMNS = ("suite", "protocol", "method", "budget", "n", "errors", "media_kept", "kv_kept", "audio", "order", "count",
           "video", "alignment", "choice", "unparsed", "first_word", "exact", "normalised", "agreement", "kl",
           "evidence_kept", "kept_time")
FAMILY_COLUMNS = ("protocol", "family", "method", "budget", "n", "errors", "choice", "unparsed", "first_word",
                  "exact", "normalised", "agreement", "kl")


def write_summary(summary: list[dict], out_dir: Path, families: list[dict] | None = None) -> list[str]:
    """summary.json/md/csv, and with `families` the per-category summary_families.md/csv beside them; returns
    the names of the files written (the command names every one)."""
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = calibration(summary)
    (out_dir / "summary.md").write_text(summary_markdown(summary) + ("\n" + "\n".join(f"- {x}" for x in lines) + "\n"
                                                                     if lines else ""))
    _write_csv(out_dir / "summary.csv", summary)
    written = ["summary.csv", "summary.json", "summary.md"]
    if families:
        (out_dir / "summary_families.md").write_text(summary_markdown(families, FAMILY_COLUMNS))
        _write_csv(out_dir / "summary_families.csv", families)
        written += ["summary_families.csv", "summary_families.md"]
    return written


def _write_csv(path: Path, entries: list[dict]) -> None:
    columns = sorted({k for e in entries for k in e}, key=_column_order)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(entries)


def summary_markdown(summary: list[dict], order: tuple[str, ...] = COLUMNS) -> str:
    """The summary as a Markdown table (what the README shows): percentages with one decimal, KL with 4."""
    columns = [c for c in order if any(e.get(c) is not None for e in summary)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for e in summary:
        cells = []
        for c in columns:
            v = e.get(c)
            if v is None:
                cells.append("–")
            elif c in ("n", "errors", "unparsed", "suite", "protocol", "budget", "family"):
                cells.append(str(v))
            elif c == "method":
                cells.append(f"`{v}`")
            elif c == "kl":
                cells.append(f"{v:.4f}")
            elif c == "kept_time":
                cells.append(f"{v:.2f}")
            else:
                cells.append(f"{100 * v:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _column_order(name: str) -> tuple[int, str]:
    if name == "family":  # the per-family table's key, after the method
        return (COLUMNS.index("budget"), name)
    return (COLUMNS.index(name) if name in COLUMNS else len(COLUMNS), name)


def plot_summary(summary: list[dict], path: Path, metric: str = "first_word") -> None:
    """Accuracy (or agreement) versus media kept, one panel per (suite,) protocol, one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(e.get("suite"), e["protocol"]) for e in summary}, key=lambda k: (SUITE_ORDER.get(k[0], 9), k[1]))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    methods = sorted({e["method"] for e in summary if e["method"] != "full"})
    for ax, (suite, protocol) in zip(axes[0], panels):
        by_method: dict[str, list[tuple[float, float]]] = {}
        for e in summary:
            if (e.get("suite"), e["protocol"]) != (suite, protocol) or e.get(metric) is None:
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
        ax.set_ylabel({"first_word": "first-word accuracy (%)", "choice": "multiple-choice accuracy (%)",
                       "agreement": "first token = full cache's (%)"}
                      .get(metric, metric))
        ax.set_title(f"{suite}, protocol: {protocol}" if suite else f"protocol: {protocol}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # every row an error: nothing to label
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
