"""A cost bench's result as Rich tables (the terminal) and as Markdown tables (the README)."""

from __future__ import annotations


def fmt_n(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def _methods_at(sizes: list[dict], budget: float) -> list[str]:
    """The methods measured at `budget`, in the order they ran."""
    return [x["name"] for x in sizes[0]["methods"] if x["budget"] == budget]


def _row(size: dict, name: str, budget: float) -> dict | None:
    """Method `name`'s numbers at `budget` in one size's results (None where it did not run)."""
    return next((x for x in size["methods"] if x["name"] == name and x["budget"] == budget), None)


def _across(sizes: list[dict], name: str, budget: float) -> list[dict | None]:
    return [_row(r, name, budget) for r in sizes]


def _per_size_table(title: str, first: str, sizes: list[dict]):
    """A Rich table with a first column `first` and one column per prompt size."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column(first)
    for r in sizes:
        table.add_column(f"N={fmt_n(r['n'])}", justify="right")
    return table


def render(result: dict, console) -> None:
    from rich.table import Table

    m = result["machine"]
    model = result["model"]
    console.print(f"[bold]machine[/bold]: {m['cpu']} · {m['usable_cpus']} usable CPUs · torch {m['torch']} "
                  f"({m['torch_threads']} threads) · transformers {m['transformers']} · load avg "
                  f"{m.get('load_avg_start')} → {m.get('load_avg_end')}", highlight=False)
    console.print(f"[bold]model[/bold]: {model['name']} text decoder, {model['layers']} of {model['full_layers']} "
                  f"layers, {model['dtype']}, {model['text_params'] / 1e6:.0f} M parameters (random weights)",
                  highlight=False)
    sizes = result["sizes"]
    budgets = result["config"]["budgets"]

    table = _per_size_table(f"prefill: time without hooks and each method's added time (budget {budgets[0]:g})",
                            "method", sizes)
    table.add_row("no method (s)", *[f"{r['prefill']['none_s']:.2f}" for r in sizes])
    table.add_row("acckv, real hooks (e2e Δ)", *[f"{r['prefill']['acckv_e2e_overhead_pct']:+.1f} %" for r in sizes])
    for name in _methods_at(sizes, budgets[0]):
        table.add_row(name, *[f"{x['overhead_pct']:.2f} % ({x['hook_s']:.2f} s)"
                              for x in _across(sizes, name, budgets[0])])
    console.print(table)

    table = Table(title="KV bytes kept / budget (all layers)")
    table.add_column("method")
    for r in sizes:
        for b in budgets:
            table.add_column(f"{fmt_n(r['n'])} @ {b:g}", justify="right")
    for name in _methods_at(sizes, budgets[0]):
        table.add_row(name, *[f"{x['kv_ratio']:.3f} {({True: '✓', False: '✗', None: '–'})[x['budget_check']]}"
                              for x in (_row(r, name, b) for r in sizes for b in budgets)])
    console.print(table)

    table = Table(title="decode: ms per token (median) and split of one step (ms)")
    for col in ("N", "cache", "entries/layer", "KV MB", "ms/token", "× full", "× full·fw", "attn core", "KV append",
                "attn proj", "MLP", "LM head", "other", f"× full·fw @{model['full_layers']}L"):
        table.add_column(col, justify="right")
    for r in sizes:
        for d in r["decode"]:
            p = d["profile"]
            table.add_row(fmt_n(r["n"]), d["setting"], str(d["entries_per_layer"]), f"{d['kv_bytes'] / 2**20:.1f}",
                          f"{d['ms_per_token']:.1f}", f"{d['ratio_to_full']:.2f}", f"{d['ratio_to_full_fw']:.2f}",
                          f"{p['attention_core_ms']:.1f}", f"{p['kv_append_ms']:.1f}", f"{p['attention_proj_ms']:.1f}",
                          f"{p['mlp_ms']:.1f}",
                          f"{p['lm_head_ms']:.1f}", f"{p['other_ms']:.1f}", f"{d['projected_ratio_to_full_fw']:.2f}")
    console.print(table)
    console.print("full = full cache, transformers sdpa, no hooks; full·fw = the same cache through the framework's "
                  "attention (acckv_sdpa, used by every compressed run); 20 %/10 % = AccKV caches (no "
                  "calibration). Split from a separate pass with timing hooks.", highlight=False)

    table = _per_size_table(f"peak memory above the RSS before each phase, MB ({result.get('memory_method')})",
                            "phase", sizes)
    table.add_row("prefill, no method", *[f"{r['memory']['prefill_none_peak_mb']:.0f}" for r in sizes])
    table.add_row("prefill with acckv hooks", *[f"{r['memory']['prefill_acckv_peak_mb']:.0f}" for r in sizes])
    for name in ("acckv", "snapkv", "h2o", "lookm"):
        row = _across(sizes, name, budgets[0])
        if all(row):
            table.add_row(f"{name} step alone", *[f"{x['peak_mb']:.0f}" for x in row])
    console.print(table)

    table = Table(title="targets")
    table.add_column("target")
    table.add_column("measured")
    table.add_column("result")
    for t in result["targets"]:
        table.add_row(t["target"], t["value"], {True: "[green]PASS[/green]", False: "[red]FAIL[/red]"}.get(t["pass"], "n/a"))
    console.print(table)
    console.print(f"total bench time {result['total_s']:.0f} s", highlight=False)


def markdown(result: dict) -> str:
    """The main numbers as Markdown tables (for the README's Performance section)."""
    sizes = result["sizes"]
    budgets = result["config"]["budgets"]
    lines = ["| method | " + " | ".join(f"N = {fmt_n(r['n'])}" for r in sizes) + " |",
             "|---|" + "---:|" * len(sizes),
             "| prefill, no method | " + " | ".join(f"{r['prefill']['none_s']:.1f} s" for r in sizes) + " |",
             "| acckv, hooks in the prefill | " + " | ".join(
                 f"+{r['prefill']['acckv_hook_overhead_pct']:.2f} % (e2e Δ {r['prefill']['acckv_e2e_overhead_pct']:+.1f} %)"
                 for r in sizes) + " |"]
    for name in _methods_at(sizes, budgets[0]):
        lines.append(f"| {name} | " + " | ".join(f"+{x['overhead_pct']:.2f} % ({x['hook_s']:.2f} s)"
                                                 for x in _across(sizes, name, budgets[0])) + " |")
    lines += ["", "| N | cache | entries/layer | KV MB | ms/token | × full | × full·fw | attn core | KV append | "
                  "attn proj | MLP | LM head | other | × full·fw, 36 layers |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sizes:
        for d in r["decode"]:
            p = d["profile"]
            lines.append(f"| {fmt_n(r['n'])} | {d['setting']} | {d['entries_per_layer']} | {d['kv_bytes'] / 2**20:.1f} | "
                         f"{d['ms_per_token']:.1f} | {d['ratio_to_full']:.2f} | {d['ratio_to_full_fw']:.2f} | "
                         f"{p['attention_core_ms']:.1f} | {p['kv_append_ms']:.1f} | {p['attention_proj_ms']:.1f} | "
                         f"{p['mlp_ms']:.1f} | {p['lm_head_ms']:.1f} | {p['other_ms']:.1f} | "
                         f"{d['projected_ratio_to_full_fw']:.2f} |")
    lines += ["", "| peak memory above the RSS before the phase | " + " | ".join(f"N = {fmt_n(r['n'])}" for r in sizes) + " |",
              "|---|" + "---:|" * len(sizes),
              "| prefill, no method | " + " | ".join(f"{r['memory']['prefill_none_peak_mb']:.0f} MB" for r in sizes) + " |",
              "| prefill with acckv hooks | " + " | ".join(f"{r['memory']['prefill_acckv_peak_mb']:.0f} MB" for r in sizes) + " |"]
    for name in ("acckv", "h2o", "lookm"):
        row = _across(sizes, name, budgets[0])
        if all(row):
            lines.append(f"| {name} step alone | " + " | ".join(f"{x['peak_mb']:.0f} MB" for x in row) + " |")
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {({True: 'PASS', False: 'FAIL'}).get(t['pass'], 'n/a')} |")
    return "\n".join(lines) + "\n"
