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
    budget: str
    layers: list[dict]
    timeline: list[dict]

    @classmethod
    def from_run(cls, run, layout: TokenLayout) -> "RetentionReport":
        records = sorted(run.layers, key=lambda r: r["layer"])
        return cls(run.method.name, str(run.budget), [layer_report(r, layout) for r in records],
                   timeline(records, layout))

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


def _pct(kept: int, total: int) -> str:
    return f"{kept}/{total}" if total else "–"


def compact_rows(layers: list[dict], limit: int = 8) -> list[dict]:
    """At most `limit` evenly spaced layers, always including the first and the last."""
    if len(layers) <= limit:
        return layers
    step = (len(layers) - 1) / (limit - 1)
    return [layers[round(i * step)] for i in range(limit)]


def render_layers(report: RetentionReport, full: bool = False) -> Table:
    """Rich table: kept/total per modality, attention shares and AccKV's choices, per layer."""
    table = Table(title=f"KV retention per layer — {report.method} @ budget {report.budget}", title_justify="left")
    for col in ("layer", "video", "audio", "text", "attn v/a/t", "priority", "merged", "calib. evicted", "KV MB"):
        table.add_column(col, justify="right")
    for l in (report.layers if full else compact_rows(report.layers)):
        share = l.get("attention_share") or {}
        shares = "/".join(f"{share.get(k, 0):.2f}" for k in ("video", "audio", "text")) if share else "–"
        merged = l.get("merged") or {}
        table.add_row(str(l["layer"]), _pct(l["video_kept"], l["video_total"]),
                      _pct(l["audio_kept"], l["audio_total"]), _pct(l["text_kept"], l["text_total"]), shares,
                      str(l.get("priority") or "–"), str(sum(merged.values())) if merged else "–",
                      str((l.get("calibration") or {}).get("evicted", "–")),
                      f"{l['kv_bytes_after'] / 2**20:.2f}")
    if not full and len(report.layers) > len(compact_rows(report.layers)):
        table.caption = f"{len(report.layers)} layers; showing a sample — use --report full for all"
    return table


def render_timeline(report: RetentionReport) -> Table:
    """Rich table: per second, the share of audio and video entries that survived (over all layers)."""
    table = Table(title="Surviving media per second (summed over layers)", title_justify="left")
    for col in ("second", "video kept", "audio kept"):
        table.add_column(col, justify="right")
    for row in report.timeline:
        table.add_row(str(row["second"]), _pct(row["video_kept"], row["video_total"]),
                      _pct(row["audio_kept"], row["audio_total"]))
    return table
