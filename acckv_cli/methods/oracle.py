"""`oracle`: keep the media entries that hold the answer, then spread the rest of the budget over time.

Not a method one could deploy — it reads the answer's location from the benchmark — but the ceiling of
*selection* at a budget: what any eviction method could reach if it found the evidence perfectly and kept
the rest evenly. A method near the oracle has little left to gain from better scores; a large gap between
the oracle and the full cache says the budget itself is too small for the question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from acckv_cli.lazy import torch

from acckv_cli.errors import UsageError
from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult
from acckv_cli.methods.evidence import as_spans, evidence_mask
from acckv_cli.methods.registry import register
from acckv_cli.methods.uniform import spread_in_time


@register
@dataclass
class Oracle(CompressionMethod):
    """Evidence first, then even in time; the same set in every layer and every KV head.

    evidence: spans [start, end) in seconds that hold the answer (`methods.evidence`: a media token is inside
              when its interval overlaps a span). `eval` fills it from each manifest row's `evidence`: the
              question's own spans under `query-aware` and `prefill`, the union of the clip's questions'
              spans under `context` and `stream` (one compressed cache serves every question there). On the
              command line: `-m oracle:evidence=2-3.5+7-8`.
    Per layer (keys [1, KV, L, D] are not read): E = media tokens inside the spans, k = the layer's media
    slots. |E| ≤ k: keep all of E, and k − |E| of the other media by `uniform.spread_in_time` (evenly in
    time, per modality by count). |E| > k: keep `spread_in_time(E, k)`, an even-in-time subset of E.
    """

    name = "oracle"
    summary = "keeps the media inside the question's evidence spans, the rest evenly in time (ceiling; needs evidence)"
    needs_evidence: ClassVar[bool] = True
    evidence: tuple[tuple[float, float], ...] = ()

    def __post_init__(self):
        self.evidence = as_spans(self.evidence)  # a manifest list or `S-E+S-E` from the command line

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        if not self.evidence:
            raise UsageError("oracle needs the question's evidence spans: give -m oracle:evidence=START-END"
                             "[+START-END…] in seconds, or an \"evidence\" field in every eval manifest row")
        media = ctx.layout.media_mask
        inside = evidence_mask(ctx.layout, self.evidence)
        slots = self.media_slots(ctx)
        n_inside = int(inside.sum())
        if n_inside >= slots:
            chosen = spread_in_time(ctx.layout, inside, slots)
        else:
            rest = spread_in_time(ctx.layout, media & ~inside, slots - n_inside)
            chosen = torch.cat([inside.nonzero().squeeze(1), rest])
        keep = torch.cat([(~media).nonzero().squeeze(1), chosen]).sort().values
        return LayerResult(keep.to(ctx.keys.device), stats={"evidence_entries": n_inside,
                                                             "evidence_entries_kept": min(n_inside, slots)})
