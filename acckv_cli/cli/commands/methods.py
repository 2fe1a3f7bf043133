"""`acckv methods`: the registered compression methods, their papers and hyperparameters."""

from __future__ import annotations

import json
import sys

from acckv_cli.methods import METHODS  # torch-free: the method modules import torch lazily
from acckv_cli.terminal import new_table, out


def run(as_json: bool, options: bool) -> None:
    rows = [{"name": name, "summary": cls.summary, "paper": cls.paper or None, "defaults": cls().config(),
             "options": cls.options()} for name, cls in sorted(METHODS.items())]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = new_table("KV compression methods", "name", "what it does", "paper", left=("name", "what it does", "paper"))
    for row in rows:
        table.add_row(row["name"], row["summary"], row["paper"] or "–")
        if options:
            for opt in row["options"]:
                allowed = f" ∈ {{{', '.join(opt['choices'])}}}" if opt["choices"] else ""
                table.add_row("", f"  {opt['name']}: {opt['type']} = {opt['default']!r}{allowed}", "")
    out.print(table)
