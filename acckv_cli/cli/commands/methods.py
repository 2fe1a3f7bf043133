"""`acckv methods`: the registered compression methods, their papers and hyperparameters."""

from __future__ import annotations

import json
import sys

from rich.table import Table

from acckv_cli.methods import METHODS
from acckv_cli.terminal import out


def run(as_json: bool, options: bool) -> None:
    rows = [{"name": name, "summary": cls.summary, "paper": cls.paper or None, "defaults": cls().config(),
             "options": cls.options()} for name, cls in sorted(METHODS.items())]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title="KV compression methods")
    table.add_column("name")
    table.add_column("what it does")
    table.add_column("paper")
    for row in rows:
        table.add_row(row["name"], row["summary"], row["paper"] or "–")
        if options:
            for opt in row["options"]:
                allowed = f" ∈ {{{', '.join(opt['choices'])}}}" if opt["choices"] else ""
                table.add_row("", f"  {opt['name']}: {opt['type']} = {opt['default']!r}{allowed}", "")
    out.print(table)
