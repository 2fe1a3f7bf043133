"""`taskfocus`: one priority modality per prompt, chosen from the question (no paper; AccKV's O1 argues against it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.model.layout import Modality
from acckv_cli.methods.acckv import redistributed_scores
from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult
from acckv_cli.methods.registry import register

VIDEO, AUDIO = Modality.VIDEO, Modality.AUDIO
AUDIO_WORDS = frozenset({"hear", "sound", "sounds", "listen", "music", "voice", "say", "said", "speak", "noise",
                         "instrument", "play", "plays", "playing", "sing"})
FOCUS = {"audio": AUDIO, "video": VIDEO}


def question_focus(question: str) -> Modality:
    """AUDIO when the question contains an audio keyword (whole word, case-insensitive), else VIDEO."""
    words = set(re.findall(r"[a-z]+", question.lower()))
    return AUDIO if words & AUDIO_WORDS else VIDEO


@register
@dataclass
class TaskFocus(CompressionMethod):
    """Naive task-based modality focus (docs/acckv-method.md); the baseline for AccKV's per-layer A-F.

    One priority modality per prompt, the same in every layer: `focus = audio | video`, or `auto` from
    keywords in the question (`layout.extras["question"]`, set by the CLI; empty → video). The media
    slots go `focus_share` to the focus modality and the rest to the other (each capped at its token
    count, the overflow given to the other). Within each modality tokens are ranked by AccKV's A-R score
    (`redistributed_scores`, text query rows, mode `paper`, heads reduced → fp32 [L]); one selection for
    all KV heads. No merging, no calibration: the cache entries are simply gathered.
    """

    name = "taskfocus"
    cannot_stream = "it picks its modality from the question, which a streamed cache is compressed without"
    summary = "one question-chosen priority modality for every layer, A-R scores within each (naive focus)"
    focus: str = "auto"
    focus_share: float = 0.8
    redistribution: str = "visible_count"
    head_reduction: str = "mean"

    def __post_init__(self):
        if self.focus not in ("auto", *FOCUS):
            raise ValueError(f"taskfocus focus must be auto, audio or video, got {self.focus!r}")
        if not 0 <= self.focus_share <= 1:
            raise ValueError(f"taskfocus focus_share must lie in [0, 1], got {self.focus_share}")

    def priority(self, ctx: LayerContext) -> Modality:
        if self.focus == "auto":
            return question_focus(str(ctx.layout.extras.get("question", "") or ""))
        return FOCUS[self.focus]

    def quota(self, slots: int, n_focus: int, n_other: int) -> tuple[int, int]:
        """(focus slots, other slots): `focus_share` of `slots`, capped at the counts, overflow moved across."""
        q_focus = min(n_focus, int(round(slots * self.focus_share)))
        q_other = min(n_other, slots - q_focus)
        q_focus = min(n_focus, slots - q_other)
        return q_focus, q_other

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        slots = self.media_slots(ctx)
        high = self.priority(ctx)
        low = AUDIO if high == VIDEO else VIDEO
        masks = {high: ctx.mask(high), low: ctx.mask(low)}
        q_high, q_low = self.quota(slots, int(masks[high].sum()), int(masks[low].sum()))
        scores = redistributed_scores(ctx, ctx.rows("text"), self.redistribution, self.head_reduction)
        chosen = [ctx.protected.nonzero().squeeze(1)]
        for kind, k in ((high, q_high), (low, q_low)):
            idx = masks[kind].nonzero().squeeze(1)
            chosen.append(idx[scores[idx].topk(k).indices] if k > 0 else idx[:0])
        keep = torch.cat(chosen).sort().values
        return LayerResult(keep, stats={"priority": high.label, "quota": {high.label: q_high, low.label: q_low}})
