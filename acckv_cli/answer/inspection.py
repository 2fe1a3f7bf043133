"""`acckv inspect`: where the question's attention goes, per layer and per second of the clip.

One prefill with the full cache (nothing is evicted). At every decoder layer an `Inspector` — a `full`
method that only measures — reads, from the text queries after the media (question, delimiters, assistant
header; `LayerContext.rows("text")`):

* the share of their attention on video, audio and text keys, raw (`LayerContext.media_share`) and after
  AccKV's attention redistribution A-R (`redistributed_scores`, docs/acckv-method.md);
* AccKV's modality weights W_v, W_a (`AccKV.modality_weights`, §4) and the priority modality it would
  choose; from the priorities, the layer where video takes over (paper observation O1);
* per whole second of the clip, the share of the raw attention that lands on audio and on video tokens.

Shares are fractions of the text queries' attention, averaged over heads and query rows (they sum to 1
over all keys of a layer). A-R shares are fractions of Σ_j s_j over the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from rich.table import Table

from acckv_cli.model.layout import Modality
from acckv_cli.methods import Budget
from acckv_cli.methods.acckv import AccKV, redistributed_scores
from acckv_cli.methods.base import LayerContext, LayerResult
from acckv_cli.methods.full import Full
from acckv_cli.terminal import new_table

DEFAULT_QUESTION = "What is happening in this clip?"
KINDS = ("video", "audio", "text")
MEDIA_KINDS = {"video": Modality.VIDEO, "audio": Modality.AUDIO}


def _shares(scores: torch.Tensor, ctx: LayerContext) -> dict[str, float]:
    total = float(scores.sum()) or 1.0
    return {"video": float(scores[ctx.mask(Modality.VIDEO)].sum()) / total,
            "audio": float(scores[ctx.mask(Modality.AUDIO)].sum()) / total,
            "text": float(scores[ctx.protected].sum()) / total}


@dataclass
class Inspector(Full):
    """Keeps every entry (like `full`) and records attention statistics per layer. Not registered."""

    name = "inspect"
    summary = "full cache; records attention shares, A-R shares, AccKV's modality weights and a timeline"
    acckv: AccKV = field(default_factory=AccKV)

    def attention_needs(self):
        return self.acckv.attention_needs()

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        acc = self.acckv
        scores = redistributed_scores(ctx, ctx.rows(acc.score_queries), acc.redistribution, acc.head_reduction)
        weights = {k.label: w for k, w in acc.modality_weights(ctx, scores).items()}
        raw = ctx.text_attention  # [L], sums to 1 (mean over heads and text rows of probability rows)
        seconds = ctx.layout.second_bins().to(raw.device)
        n_sec = max(int(seconds.max()) + 1, 0) if seconds.numel() else 0
        timeline = {}
        for label, kind in MEDIA_KINDS.items():
            mask = ctx.mask(kind)
            timeline[label] = (torch.bincount(seconds[mask], weights=raw[mask].float(), minlength=n_sec).tolist()
                               if mask.any() else [0.0] * n_sec)
        stats = {"share_raw": _shares(raw, ctx), "share_redistributed": _shares(scores, ctx),
                 "weights": {k: round(weights.get(k, 0.0), 6) for k in MEDIA_KINDS},
                 "priority": max(weights, key=weights.get) if weights else None,
                 "timeline": timeline}
        return LayerResult(torch.arange(ctx.length, device=ctx.keys.device), stats=stats)


def takeover_layer(priorities: list[str | None], both_present: bool) -> int | None:
    """First layer from which video is the priority in every deeper layer; None if never (or no choice)."""
    if not both_present or not priorities or priorities[-1] != "video":
        return None
    layer = len(priorities) - 1
    while layer > 0 and priorities[layer - 1] == "video":
        layer -= 1
    return layer


def inspect_clip(lm, path: str, question: str = DEFAULT_QUESTION, fps: float = 2.0,
                 max_pixels: int | None = None, official_fps: bool = False, acckv: AccKV | None = None) -> dict:
    """Per-layer attention statistics of one clip + question, as one JSON-serialisable dict; `acckv` is the
    AccKV whose scores and priorities are measured (default: its defaults, `-m acckv:…` on the command line)."""
    from acckv_cli.answer.pipeline import check_question, decode_for_model, media_summary, pixel_cap
    from acckv_cli.answer.session import ClipSession

    question = check_question(question)
    high = pixel_cap(lm, max_pixels)
    decoded = decode_for_model(lm, path, fps=fps, max_pixels=max_pixels, official_fps=official_fps)
    session = ClipSession(lm, decoded, high)
    inspector = Inspector(acckv=acckv if acckv is not None else AccKV())
    # `prefill`: the whole prompt (question and assistant header) is prefilled, so every text row after
    # the media is measured; nothing is evicted
    answer = session.ask([question], inspector, Budget(1.0), "prefill", max_new_tokens=1)[0]
    layout = answer.layout
    records = answer.report.layers
    counts = layout.counts()
    present = [k for k in MEDIA_KINDS if counts[k]]
    layers = [{"layer": r["layer"], "share_raw": _round(r["share_raw"]),
               "share_redistributed": _round(r["share_redistributed"]),
               "weights": r["weights"], "priority": r["priority"]} for r in records]
    n_sec = len(records[0]["timeline"]["video"]) if records else 0
    timeline = []
    for s in range(n_sec):
        row: dict = {"second": s}
        for kind in MEDIA_KINDS:
            per_layer = [r["timeline"][kind][s] for r in records]
            row[kind] = round(sum(per_layer) / len(per_layer), 6)
            row[f"{kind}_per_layer"] = [round(v, 6) for v in per_layer]
        timeline.append(row)
    return {
        "video": path, "question": question, "model": lm.name,
        "media": media_summary(decoded, session.prompt.inputs),
        "tokens": {"video": counts["video"], "audio": counts["audio"],
                   "text": len(layout) - counts["video"] - counts["audio"], "total": len(layout),
                   "query_rows": int(layout.post_media_text_mask().sum())},
        "acckv": {k: v for k, v in inspector.acckv.config().items()
                  if k in ("score_queries", "redistribution", "head_reduction", "focus_stat")},
        "layers": layers,
        "takeover_layer": takeover_layer([l["priority"] for l in layers], len(present) == 2),
        "timeline": timeline,
        "timings": {"decode_s": answer.timings["decode_s"], "encode_s": answer.timings["encode_s"],
                    "prefill_s": round(answer.timings["media_prefill_s"] + answer.timings["question_prefill_s"], 4)},
        "notices": list(dict.fromkeys([*lm.notices, *decoded.notices, *session.prompt.notices])),
    }


def _round(shares: dict) -> dict:
    return {k: round(float(shares.get(k, 0.0)), 6) for k in KINDS}


# --------------------------------------------------------------------------------------------- rendering


def render_layers(result: dict) -> Table:
    """Rich table: raw and A-R attention shares, AccKV's weights and priority, per layer."""
    table = new_table("Where the question's attention goes, per layer", "layer", "raw % v/a/t",
                      "after A-R % v/a/t", "W_v/W_a", "priority")
    takeover = result["takeover_layer"]
    for l in result["layers"]:
        raw, ar, w = l["share_raw"], l["share_redistributed"], l["weights"]
        prio = l["priority"] or "–"
        if takeover is not None and l["layer"] >= takeover:
            prio = f"[bold]{prio}[/bold]"
        table.add_row(str(l["layer"]), "/".join(f"{100 * raw[k]:.1f}" for k in KINDS),
                      "/".join(f"{100 * ar[k]:.1f}" for k in KINDS), f"{w['video']:.2f}/{w['audio']:.2f}", prio)
    counts = result["tokens"]
    table.caption = (f"% of the attention of the {counts['query_rows']} text tokens after the media (question, "
                     f"assistant header) on video/audio/text keys ({counts['video']}/{counts['audio']}/"
                     f"{counts['text']} tokens), mean over heads. A-R: AccKV's redistributed score. "
                     f"W: AccKV's modality weights. " + _takeover_sentence(result))
    return table


def _takeover_sentence(result: dict) -> str:
    takeover = result["takeover_layer"]
    if result["tokens"]["video"] == 0 or result["tokens"]["audio"] == 0:
        return "Only one media modality: no takeover."
    if takeover is None:
        return "Video never stays AccKV's priority through the last layer (takeover: none)."
    return f"Video is AccKV's priority from layer {takeover} to the last layer (takeover layer {takeover})."


_BARS = " ▁▂▃▄▅▆▇█"


def render_timeline(result: dict) -> Table:
    """Rich table: per second, the share of attention on video and audio (mean over layers) with bars."""
    table = new_table("Attention per second of the clip (mean over layers, % of the text queries' attention)",
                      "second", "video", "", "audio", " ", left=("", " "))
    rows = result["timeline"]
    top = max([max(r["video"], r["audio"]) for r in rows] or [0.0]) or 1.0
    for r in rows:
        table.add_row(f"{r['second']}–{r['second'] + 1} s", f"{100 * r['video']:.1f}", _bar(r["video"], top),
                      f"{100 * r['audio']:.1f}", _bar(r["audio"], top))
    return table


def _bar(value: float, top: float, width: int = 16) -> str:
    cells = value / top * width
    full = int(cells)
    part = int(round((cells - full) * (len(_BARS) - 1)))
    return "█" * full + (_BARS[part] if part and full < width else "")


def plot(result: dict, path: str) -> None:
    """Write the four heatmaps of `figure` to `path` (PNG, PDF or SVG)."""
    import matplotlib.pyplot as plt

    fig = figure(result)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure(result: dict) -> "matplotlib.figure.Figure":  # noqa: F821  (imported when called)
    """Four heatmaps: (a) raw and (b) A-R shares, layers × modality; (c) video and (d) audio, layers × seconds.

    (c) and (d) share one colour scale (0 to the larger maximum of the two), so a colour means the same share
    of attention on video as on audio and the panels can be compared cell by cell.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = result["layers"]
    n_layers = len(layers)
    raw = np.array([[l["share_raw"][k] for k in KINDS] for l in layers]) * 100
    ar = np.array([[l["share_redistributed"][k] for k in KINDS] for l in layers]) * 100
    timeline = result["timeline"]
    n_sec = len(timeline)
    per = {k: (np.array([r[f"{k}_per_layer"] for r in timeline]).T * 100 if n_sec else np.zeros((n_layers, 0)))
           for k in MEDIA_KINDS}
    top = max([float(per[k].max()) for k in MEDIA_KINDS if per[k].size] or [0.0]) or 1.0
    takeover = result["takeover_layer"]
    ylabels = [f"{l['layer']} ({l['priority'] or '–'})" for l in layers]

    height = max(6.0, 3.0 + 0.28 * n_layers) * 2
    fig, axes = plt.subplots(2, 2, figsize=(13, height), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.12)
    name = str(result["video"]).replace("\\", "/").rsplit("/", 1)[-1]
    fig.suptitle(f"Attention of the question's tokens — {name}\n“{result['question']}” · model {result['model']}",
                 fontsize=13)

    for ax, data, title in ((axes[0, 0], raw, "(a) raw attention share per layer"),
                            (axes[0, 1], ar, "(b) share after AccKV's attention redistribution (A-R)")):
        im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=100, origin="upper")
        ax.set_title(title)
        ax.set_xticks(range(len(KINDS)), [k for k in KINDS])
        ax.set_xlabel("key modality")
        ax.set_yticks(range(n_layers), ylabels)
        ax.set_ylabel("decoder layer (AccKV priority)")
        if n_layers <= 40:
            for i in range(n_layers):
                for j in range(len(KINDS)):
                    ax.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if data[i, j] < 60 else "black")
        _mark_takeover(ax, takeover, len(KINDS))
        fig.colorbar(im, ax=ax, label="% of the question's attention")

    for ax, kind, letter in ((axes[1, 0], "video", "c"), (axes[1, 1], "audio", "d")):
        data = per[kind]
        ax.set_title(f"({letter}) attention on {kind} tokens per second of the clip")
        ax.set_ylabel("decoder layer")
        ax.set_yticks(range(n_layers), [str(l["layer"]) for l in layers])
        if not result["tokens"][kind] or n_sec == 0:
            ax.text(0.5, 0.5, f"no {kind} in this clip", ha="center", va="center", transform=ax.transAxes,
                    fontsize=12)
            ax.set_xticks([])
            ax.set_xlabel("time in the clip (s)")
            continue
        im = ax.imshow(data, aspect="auto", cmap="magma", vmin=0, vmax=top, origin="upper",
                       extent=(0, n_sec, n_layers - 0.5, -0.5))
        ax.set_xlabel("time in the clip (s); each column is one second")
        step = max(1, -(-n_sec // 12))
        ax.set_xticks(np.arange(0, n_sec + 1, step))
        _mark_takeover(ax, takeover, n_sec)
        fig.colorbar(im, ax=ax, label=f"% of the question's attention in that second ((c) and (d): one scale)")
    note = ("Share: fraction of the attention that the text tokens after the media (question, assistant header) "
            "give to each kind of key, mean over heads and query rows.\n"
            "A-R: AccKV's redistributed score (docs/acckv-method.md). Priority: the modality with the larger AccKV "
            "weight W (mean A-R score per token).\n")
    note += (f"Dashed line: video is the priority from layer {takeover} to the last layer." if takeover is not None
             else "No layer from which video stays the priority to the last layer (no takeover).")
    fig.supxlabel(note, fontsize=9)
    return fig


def _mark_takeover(ax, takeover: int | None, width: float) -> None:
    if takeover is not None:
        ax.axhline(takeover - 0.5, color="cyan", linestyle="--", linewidth=1.5)
