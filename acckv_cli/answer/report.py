"""Per-layer retention reports: what each layer kept of audio, video and text, and why.

Built from the records a `Compression` run collects (kept prompt indices and method statistics per
layer) and the prompt's `TokenLayout`. Everything is plain JSON-serialisable data; `render_*` functions
turn it into Rich tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rich.table import Table

from acckv_cli.model.layout import Modality, TokenLayout
from acckv_cli.terminal import new_table, percent

GROUPS = {"video": (Modality.VIDEO,), "audio": (Modality.AUDIO,),
          "text": (Modality.SYSTEM, Modality.TEXT, Modality.QUESTION, Modality.DELIM)}


def kept_share(keep: torch.Tensor, length: int) -> torch.Tensor:
    """fp32 [L]: the share of KV heads that keep each prompt entry (1/0 for a set shared by all heads)."""
    rows = keep[None] if keep.ndim == 1 else keep
    share = torch.zeros(rows.shape[0], length)
    share.scatter_(1, rows.cpu(), 1.0)
    return share.mean(0)


def _count(value: torch.Tensor):
    """An entry count: an int for shared sets, the mean over KV heads (2 decimals) for per-head sets."""
    v = float(value)
    return int(round(v)) if abs(v - round(v)) < 1e-6 else round(v, 2)


def layer_report(record: dict, layout: TokenLayout) -> dict:
    """One layer: totals and kept counts per modality group, plus every statistic the method recorded.

    With a kept set per KV head (`keep` [KV, k]) the kept counts are means over the KV heads.
    """
    kept = kept_share(record["keep"], len(layout))
    out = {"layer": record["layer"], "budget": int(record["budget"]), "kept_total": _count(kept.sum()),
           "per_head": record["keep"].ndim == 2}
    for group, kinds in GROUPS.items():
        mask = layout.mask(*kinds)
        out[f"{group}_total"] = int(mask.sum())
        out[f"{group}_kept"] = _count(kept[mask].sum())
    out["media_total"] = out["video_total"] + out["audio_total"]
    out["media_kept"] = out["video_kept"] + out["audio_kept"]
    out["kv_bytes_before"] = int(record["kv_bytes_before"])
    out["kv_bytes_after"] = int(record["kv_bytes_after"])
    for key, value in record.items():  # the method's own statistics, whatever their names
        if key not in out and key not in ("keep", "kv_bytes_before", "kv_bytes_after"):
            out[key] = value
    return out


def timeline(records: list[dict], layout: TokenLayout) -> list[dict]:
    """Per whole second of the clip: audio and video entries kept, summed over layers, and their totals."""
    seconds = layout.second_bins()
    n_sec = int(seconds.max()) + 1 if seconds.numel() and seconds.max() >= 0 else 0
    rows = []
    kept_count = torch.zeros(len(layout))
    for record in records:
        kept_count += kept_share(record["keep"], len(layout))
    for kind in (Modality.VIDEO, Modality.AUDIO):
        mask = layout.mask(kind)
        total = torch.bincount(seconds[mask], minlength=n_sec) * len(records) if mask.any() else torch.zeros(n_sec, dtype=torch.long)
        kept = (torch.bincount(seconds[mask], weights=kept_count[mask].float(), minlength=n_sec) if mask.any()
                else torch.zeros(n_sec))
        rows.append((kind.label, total, kept))
    return [{"second": s, **{f"{name}_{what}": int(t[s]) if what == "total" else _count(k[s])
                             for name, t, k in rows for what in ("kept", "total")}}
            for s in range(n_sec)]


@dataclass
class RetentionReport:
    method: str
    budget: float | int  # a ratio of the media (0.2) or a media-token count (160), as JSON gives it
    layers: list[dict]
    timeline: list[dict]
    budget_text: str = ""  # for people: "20 %", "160 media tokens"

    @classmethod
    def from_run(cls, run, layout: TokenLayout) -> "RetentionReport":
        records = sorted(run.layers, key=lambda r: r["layer"])
        return cls(run.method.name, run.budget.number, [layer_report(r, layout) for r in records],
                   timeline(records, layout), run.budget.describe())

    def summary(self) -> dict:
        before = sum(l["kv_bytes_before"] for l in self.layers)
        after = sum(l["kv_bytes_after"] for l in self.layers)
        out = {"kv_bytes_before": before, "kv_bytes_after": after,
               "kv_kept_ratio": round(after / before, 4) if before else 1.0}
        for group in (*GROUPS, "media"):
            total = sum(l[f"{group}_total"] for l in self.layers)
            kept = sum(l[f"{group}_kept"] for l in self.layers)
            out[f"{group}_kept_ratio"] = round(kept / total, 4) if total else None
        return out

    def to_dict(self) -> dict:
        return {"method": self.method, "budget": self.budget, "summary": self.summary(),
                "layers": self.layers, "timeline": self.timeline}


def _kept(kept: float, total: int) -> str:
    return percent(kept / total) if total else "–"


def compact_rows(layers: list[dict], limit: int = 8) -> list[dict]:
    """At most `limit` evenly spaced layers, always including the first and the last."""
    if len(layers) <= limit:
        return layers
    step = (len(layers) - 1) / (limit - 1)
    return [layers[round(i * step)] for i in range(limit)]


def render_layers(report: RetentionReport, full: bool = False) -> Table:
    """Rich table, per layer: the share of video and audio kept, where the text queries' attention went, the
    priority modality and the KV size, in 80 columns. `full`: every layer, kept/total counts and AccKV's merge
    and calibration counts (still 80 columns: text, always kept whole, is in the caption)."""
    title = f"KV retention per layer — {report.method} @ {report.budget_text or report.budget}"
    columns = (("layer", "video kept", "audio kept", "attn % v/a/t", "priority", "merged", "calib.", "KV MB")
               if full else ("layer", "video kept", "audio kept", "attn % v/a/t", "priority", "KV MB"))
    table = new_table(title, *columns)
    for l in (report.layers if full else compact_rows(report.layers)):
        share = l.get("attention_share") or {}
        shares = "/".join(f"{100 * share.get(k, 0):.0f}" for k in ("video", "audio", "text")) if share else "–"
        if full:
            merged = l.get("merged") or {}
            cells = [_counted(l, "video"), _counted(l, "audio"), shares, str(l.get("priority") or "–"),
                     f"{sum(merged.values()):g}" if merged else "–",
                     str((l.get("calibration") or {}).get("evicted", "–"))]
        else:
            cells = [_kept(l["video_kept"], l["video_total"]), _kept(l["audio_kept"], l["audio_total"]), shares,
                     str(l.get("priority") or "–")]
        table.add_row(str(l["layer"]), *cells, f"{l['kv_bytes_after'] / 2**20:.2f}")
    first = report.layers[0] if report.layers else None
    notes = []
    if first is not None:
        notes.append(f"of the {first['video_total']} video and {first['audio_total']} audio tokens compressed; its "
                     f"{first['text_total']} text tokens are always kept")
    if full:
        notes.append("merged: evicted entries merged into kept ones; calib.: entries AccKV's calibration evicted")
    elif len(report.layers) > len(compact_rows(report.layers)):
        notes.append(f"{len(report.layers)} layers, a sample shown: --report full for all")
    table.caption = "; ".join(notes)
    return table


def _counted(layer: dict, group: str) -> str:
    kept, total = layer[f"{group}_kept"], layer[f"{group}_total"]
    return f"{kept:g}/{total}" if total else "–"


def render_timeline(report: RetentionReport) -> Table:
    """Rich table: per second, the share of audio and video entries that survived (over all layers)."""
    table = new_table("Media kept per second (all layers)", "second", "video kept", "audio kept")
    for row in report.timeline:
        table.add_row(str(row["second"]), _kept(row["video_kept"], row["video_total"]),
                      _kept(row["audio_kept"], row["audio_total"]))
    return table
