"""The demo model's training curves as a PNG: answer loss per suite (smoothed) and quick validation per suite.

    python -m acckv_cli.demo.curves runs/demo-v2/checkpoint/training.json docs/demo-model-v2.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def smooth(values: list[float], weight: float = 0.95) -> list[float]:
    out, ema = [], None
    for v in values:
        ema = v if ema is None else weight * ema + (1 - weight) * v
        out.append(ema)
    return out


def plot_curves(card: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
    for suite in ("core", "sparse", "long"):
        points = [(step, loss) for step, s, loss in card.get("loss", []) if s == suite]
        if points:
            loss_ax.plot([p[0] for p in points], smooth([p[1] for p in points]), label=suite)
    loss_ax.set(xlabel="step", ylabel="answer loss (EMA per suite)", yscale="log", title="training loss")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend()
    history = [h for h in card.get("history", []) if "validation" in h]
    for suite in ("core", "sparse", "long"):
        steps = [h["step"] for h in history if suite in h["validation"]]
        means = [100 * sum(h["validation"][suite].values()) / len(h["validation"][suite]) for h in history
                 if suite in h["validation"]]
        if steps:
            val_ax.plot(steps, means, marker="o", label=f"{suite} (mean over families)")
    if history:
        val_ax.plot([h["step"] for h in history], [100 * h["validation"].get("mc", 0) for h in history], marker="s",
                    linestyle="--", label=f"multiple choice (trained answer: {card.get('mc_answer', 'letter')})")
    val_ax.set(xlabel="step", ylabel="full-cache accuracy on validation clips (%)", ylim=(0, 102),
               title="quick validation")
    val_ax.grid(alpha=0.3)
    val_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    plot_curves(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
