"""What scoring needs from prompt rows prefilled in an earlier segment.

A prompt can be prefilled in segments against one cache (the media once, then each question), and the
compression of the compressed part happens at the end of its *last* segment. A method scores keys with
the attention of query rows; rows of that last segment are recomputed from its hidden states, but rows of
earlier segments no longer have hidden states. So while an earlier segment runs, a `Stash` records, per
layer, what the method will ask for:

* the post-RoPE queries of the last `tail` rows (the observation window of SnapKV, the closing media
  delimiters that belong to AccKV's text rows, FastV's last row when it is not in the last segment), and
* for methods that sum attention over *every* prompt row (H2O, LOOK-M, A-R over all queries), the
  column sums Σ_i w_i·A[h, i, :] over the earlier rows — exact, because a causal row's attention is final
  once its own keys exist.

Shapes: queries [H, T, D] fp32 with their prompt indices [T]; sums [H, n] fp32 (n = earlier rows).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

from acckv_cli.lazy import no_grad, torch

from acckv_cli.methods.vocab import WEIGHTINGS


@dataclass(frozen=True)
class AttentionNeeds:
    """Which earlier-segment rows a method's scoring reads: the last `tail` rows, and all rows (by weighting)."""

    tail: int = 64
    all_rows: frozenset[str] = frozenset()

    def __post_init__(self):
        unknown = set(self.all_rows) - set(WEIGHTINGS)
        if unknown or self.tail < 0:
            raise ValueError(f"bad attention needs: tail={self.tail}, all_rows={sorted(self.all_rows)}")

    def union(self, other: "AttentionNeeds") -> "AttentionNeeds":
        return AttentionNeeds(max(self.tail, other.tail), self.all_rows | other.all_rows)


@dataclass
class LayerStash:
    """One layer's record of the rows [0, n) prefilled so far."""

    n: int = 0
    tail_rows: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    tail_queries: torch.Tensor | None = None          # [H, T, D] fp32, post-RoPE
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # weighting -> [H, n] fp32

    def queries_of(self, rows: torch.Tensor) -> torch.Tensor:
        """Recorded queries of prompt rows `rows` (all must be in the tail): [H, len(rows), D]."""
        where = torch.searchsorted(self.tail_rows.to(rows.device), rows)
        return self.tail_queries[:, where]

    def covers(self, rows: torch.Tensor) -> bool:
        if self.tail_queries is None or rows.numel() == 0:
            return rows.numel() == 0
        return bool(torch.isin(rows, self.tail_rows.to(rows.device)).all())


class Stash:
    """Per-layer records of earlier prefill segments (see the module docstring).

    `record` is called from a forward hook after a layer's attention has appended a segment's keys; it
    never mutates an existing `LayerStash` in place, so a copy (`fork`) shared between questions stays valid.
    """

    def __init__(self, needs: AttentionNeeds | None = None):
        self.needs = needs or AttentionNeeds()
        self.layers: dict[int, LayerStash] = {}

    def fork(self) -> "Stash":
        copy = Stash(self.needs)
        copy.layers = dict(self.layers)
        return copy

    def get(self, idx: int) -> LayerStash:
        return self.layers.get(idx, LayerStash())

    @no_grad
    def record(self, module, idx: int, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               keys: torch.Tensor) -> None:
        """Add the rows of this forward (the last `hidden.shape[1]` entries of `keys`) to layer `idx`."""
        from acckv_cli.methods import attention as attn  # transformers: imported when a model runs

        prev = self.get(idx)
        q_len, end = hidden.shape[1], keys.shape[2]
        offset = end - q_len
        if offset != prev.n:
            raise RuntimeError(f"layer {idx}: recorded rows [0, {prev.n}) but this segment starts at {offset}")
        rows = torch.arange(offset, end, device=keys.device)
        tail_local = torch.arange(max(0, q_len - self.needs.tail), q_len, device=keys.device)
        new_queries = attn.project_queries(module, hidden, cos, sin, tail_local)
        queries = new_queries if prev.tail_queries is None else torch.cat([prev.tail_queries, new_queries], 1)
        tail_rows = torch.cat([prev.tail_rows.to(keys.device), tail_local + offset])
        keep = self.needs.tail
        sums = {}
        for weighting in self.needs.all_rows:
            part = attn.accumulate_attention(module, hidden, keys, cos, sin, rows, weighting, offset)
            before = prev.sums.get(weighting)
            if before is not None:
                part[:, :before.shape[1]] += before
            sums[weighting] = part
        self.layers[idx] = replace(prev, n=end, tail_rows=tail_rows[-keep:] if keep else tail_rows[:0],
                                   tail_queries=queries[:, -keep:] if keep else queries[:, :0], sums=sums)

    @contextlib.contextmanager
    def recording(self, thinker):
        """Record every decoder layer during the forwards run inside the block (a full-cache prefill)."""
        def hook(module, args, kwargs, output):
            hidden = kwargs["hidden_states"]
            cos, sin = kwargs["position_embeddings"]
            self.record(module, module.layer_idx, hidden, cos, sin, kwargs["cache"].layers[module.layer_idx].keys)
            return output

        handles = [layer.self_attn.register_forward_hook(hook, with_kwargs=True)
                   for layer in thinker.get_decoder().layers]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
