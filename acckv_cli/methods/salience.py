"""Key salience: how far each media token's key stands from its modality's typical key.

Why: with the question not yet asked (`context`) or asked only after the media, the text rows' attention
does not find brief evidence — on sparse SynthAVQA the rows after the media give silent audio tokens
several times their share of attention (attention sinks), and AccKV kept no more of the evidence than
random. A brief sound among silence, or a small shape on a flat background, is what differs from
everything else of its modality, and that shows in the keys themselves: silent audio tokens and background
cells share one key direction. `key_salience` measures the distance from it, per layer, from the keys
alone (no attention needed, so it also works where the attention rows cannot see the media).

Tensor shapes: keys [1, KV, L, D] (post-RoPE, as cached); modality mask [L] bool → salience [L] (heads
averaged) or [KV, L] (one row per KV head), fp32, 0 outside the mask.
"""

from __future__ import annotations

from acckv_cli.lazy import torch


def key_salience(keys: torch.Tensor, mask: torch.Tensor, per_head: bool = False) -> torch.Tensor:
    """1 − cos(k_j, mean of the unit keys of the masked tokens), for each masked token j.

    The mean of unit keys is dominated by whatever most tokens look like (silence, background), so tokens
    that look like the majority score near 0 and distinct ones (an event) score high. Post-RoPE keys differ
    by position too; the mean still averages positions away, and distinct content dominates the distance.
    """
    k = torch.nn.functional.normalize(keys[0].float(), dim=-1)            # [KV, L, D]
    out = torch.zeros(k.shape[:2], dtype=torch.float32, device=k.device)  # [KV, L]
    if bool(mask.any()):
        centre = torch.nn.functional.normalize(k[:, mask].mean(1), dim=-1)  # [KV, D]
        out[:, mask] = 1 - (k[:, mask] * centre[:, None]).sum(-1)
    return out if per_head else out.mean(0)


def standardised(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores of the masked tokens as z-scores along the last dim (0 elsewhere): a scale-free way to add
    two scores of different units (attention mass, cosine distance)."""
    out = torch.zeros_like(scores, dtype=torch.float32)
    if int(mask.sum()) < 2:
        return out
    part = scores[..., mask].float()
    out[..., mask] = (part - part.mean(-1, keepdim=True)) / part.std(-1, keepdim=True).clamp(min=1e-8)
    return out
