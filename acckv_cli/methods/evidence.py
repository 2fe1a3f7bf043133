"""Evidence spans: the seconds of a clip that hold a question's answer, and the media tokens inside them.

A question's evidence is a tuple of spans `((start, end), ...)` in seconds, each [start, end): one span for
"what colour is the star?", several for counting or order ("how many times does the drum play?"). The
`oracle` method keeps the tokens inside them; `eval` measures how much of them every method kept.

Which tokens are inside: a media token stands for an interval of the clip, not an instant. A video token of
frame pair g covers [t, t + s) with t = g·s and s the seconds per frame pair (1 s at 2 fps); an audio token
covers [t, t + 1/25 s) on Qwen2.5-Omni. A token is inside a span when its interval overlaps it, so a 0.4-s
event in the middle of a 1-s frame pair counts that pair's video tokens (reading the token time as an instant
would find no video token inside it at all). Each modality's interval length is read from the layout itself
(below), so the rule holds for both families and for the thinned layouts a streamed cache shows a method.
"""

from __future__ import annotations

import json
import math

from acckv_cli.lazy import torch

from acckv_cli.model.layout import MEDIA, Modality, TokenLayout

Spans = tuple[tuple[float, float], ...]
EPS = 1e-3  # seconds; token times are float32, audio tokens 40 ms apart


def as_spans(value) -> Spans:
    """Normalise evidence to a tuple of (start, end) spans in seconds.

    Accepts None or "" (no evidence: `()`), one span `[s, e]`, a list of spans `[[s, e], ...]`, the same as
    JSON text (a CSV cell), or the command-line form `S-E+S-E` (`-m oracle:evidence=2-3.5+7-8`: a comma
    would end the method spec). Raises ValueError (one line) on anything else or on a span with end ≤ start.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [part.split("-") for part in text.split("+")]
        except json.JSONDecodeError:
            raise ValueError(f"evidence must be [start, end] or [[start, end], ...] in seconds, not {text!r}") from None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"evidence must be [start, end] or [[start, end], ...] in seconds, not {value!r}")
    if len(value) == 2 and all(isinstance(x, (int, float, str)) and not isinstance(x, bool) for x in value):
        value = [value]  # one span written flat
    spans = []
    for span in value:
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            raise ValueError(f"evidence span must be [start, end] in seconds, not {span!r}")
        try:
            start, end = float(span[0]), float(span[1])
        except (TypeError, ValueError):
            raise ValueError(f"evidence span must be two numbers of seconds, not {span!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            raise ValueError(f"evidence span must have start < end in seconds, not {span!r}")
        spans.append((start, end))
    return tuple(spans)


def union(*groups: Spans) -> Spans:
    """The spans of several questions as one sorted tuple, overlapping or touching spans merged."""
    merged: list[list[float]] = []
    for start, end in sorted(span for group in groups for span in group):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((s, e) for s, e in merged)


def token_seconds(layout: TokenLayout) -> torch.Tensor:
    """float32 [L]: how long each media token's interval is (0 for text, and where it cannot be told).

    video: seconds per frame pair, time / frame_pair of any token past the first pair (exact whatever tokens
    a thinned layout still holds); audio (and video with one pair): the smallest gap between two distinct
    token times of the modality — every prefill step holds consecutive audio tokens, so a streamed layout
    shows it too. A modality with a single distinct time gets 0: its tokens count as instants.
    """
    out = torch.zeros(len(layout))
    for kind in MEDIA:
        mask = layout.mask(kind)
        if not mask.any():
            continue
        times = layout.time_s[mask]
        step = 0.0
        if kind == Modality.VIDEO:
            pairs = layout.frame_pair[mask]
            later = pairs > 0
            if later.any():
                step = float(times[later][0] / pairs[later][0])
        if step <= 0:
            distinct = times.unique()
            gaps = distinct[1:] - distinct[:-1]
            gaps = gaps[gaps > 1e-6]
            step = float(gaps.min()) if gaps.numel() else 0.0
        out[mask] = step
    return out


def evidence_mask(layout: TokenLayout, spans: Spans) -> torch.Tensor:
    """bool [L]: media tokens whose interval [t, t + length) overlaps one of `spans` (see the module
    docstring); a token of length 0 is inside [s, e) when s ≤ t < e."""
    inside = torch.zeros(len(layout), dtype=torch.bool)
    media = layout.media_mask
    if not spans or not media.any():
        return inside
    t, length = layout.time_s, token_seconds(layout)
    for start, end in spans:  # EPS: a token that only touches a span (float32 times) is not inside it
        overlaps = (t < end - EPS) & torch.where(length > 0, t + length > start + EPS, t >= start - EPS)
        inside |= media & overlaps
    return inside
