"""A cost bench's decode time against context length, as a PNG."""

from __future__ import annotations

from acckv_cli.bench.decode import FULL_FW
from acckv_cli.bench.render import fmt_n


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    settings = [d["setting"] for d in result["sizes"][0]["decode"]]
    for name in settings:
        xs = [r["n"] for r in result["sizes"]]
        ys = [next(d for d in r["decode"] if d["setting"] == name)["ms_per_token"] for r in result["sizes"]]
        label = {"full": "full cache (sdpa, no hooks)", FULL_FW: "full cache (acckv_sdpa)"}.get(name, f"{name} cache (AccKV)")
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks([r["n"] for r in result["sizes"]], [fmt_n(r["n"]) for r in result["sizes"]])
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("decode ms / token (median)")
    model = result["model"]
    ax.set_title(f"{model['name']}, {model['layers']} layers, {model['dtype']}", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
