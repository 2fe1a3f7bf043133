"""Maximal marginal relevance (methods/diversity.py) and AccKV's `diversity` field. Each ordering test fails if
it is inverted (redundancy rewarded instead of penalised, the lowest gain picked, the kept set ignored)."""

from __future__ import annotations

import pytest
import torch

from acckv_cli.methods import acckv as acckv_mod, get_method
from acckv_cli.methods.diversity import marginal_relevance_order
from acckv_cli.model.layout import Modality
from test_baselines import hand_layout, layout_context


def two_events(dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Gains and features of five candidates: three near-copies of event A (gains 5.0, 4.9, 4.8), then two of
    event B, orthogonal to A (gains 3.0, 2.9)."""
    a, b = torch.zeros(dim), torch.zeros(dim)
    a[0], b[1] = 1.0, 1.0
    features = torch.stack([a, a + 0.01, a - 0.01, b, b + 0.01])
    return torch.tensor([5.0, 4.9, 4.8, 3.0, 2.9]), features


def reference_order(gain: list[float], features: list[list[float]], k: int, weight: float,
                    taken: list[list[float]]) -> list[int]:
    """Plain-Python greedy: value − weight · max(0, largest cosine to anything kept), ties to the lowest index."""
    def cos(u, v):
        dot = sum(x * y for x, y in zip(u, v))
        return dot / max((sum(x * x for x in u) ** 0.5) * (sum(y * y for y in v) ** 0.5), 1e-12)

    kept, order = [list(t) for t in taken], []
    for _ in range(min(k, len(gain))):
        best, best_value = None, None
        for j in range(len(gain)):
            if j in order:
                continue
            value = gain[j] - weight * max([0.0] + [cos(features[j], s) for s in kept])
            if best_value is None or value > best_value:
                best, best_value = j, value
        order.append(best)
        kept.append(features[best])
    return order


def test_one_token_of_each_event_before_a_second_of_any():
    gain, features = two_events()
    assert marginal_relevance_order(gain, features, 2, weight=3.0).tolist() == [0, 3]
    assert marginal_relevance_order(gain, features, 3, weight=3.0).tolist() == [0, 3, 1]
    assert marginal_relevance_order(gain, features, 2, weight=0.0).tolist() == [0, 1]  # weight 0: plain top-k


def test_what_is_already_kept_counts_as_redundant():
    gain, features = two_events()
    taken = features[:1] * 2.0  # the skeleton already holds a token of event A (scale does not matter)
    assert marginal_relevance_order(gain, features, 1, weight=3.0, taken=taken).tolist() == [3]
    assert marginal_relevance_order(gain, features, 1, weight=3.0).tolist() == [0]


def test_a_small_weight_does_not_beat_a_large_gain_gap():
    gain, features = two_events()
    assert marginal_relevance_order(gain, features, 2, weight=1.0).tolist() == [0, 1]  # 4.9 − 1 > 3.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("weight", [0.5, 2.0, 10.0])
def test_equals_the_plain_reference_on_random_tensors(seed, weight):
    gen = torch.Generator().manual_seed(seed)
    gain, features = torch.randn(40, generator=gen), torch.randn(40, 5, generator=gen)
    taken = torch.randn(3, 5, generator=gen)
    mine = marginal_relevance_order(gain, features, 12, weight, taken).tolist()
    assert mine == reference_order(gain.tolist(), features.tolist(), 12, weight, taken.tolist())
    assert marginal_relevance_order(gain, features, 100, weight).numel() == 40  # capped at the candidates


def test_negative_diversity_is_refused():
    with pytest.raises(ValueError, match="diversity"):
        get_method("acckv", diversity=-1.0)


def audio_events_context(monkeypatch):
    """The hand layout with two brief sounds in the audio: tokens 10–14 (ranked highest) and 80–84 (ranked a
    little lower), every other audio token silence; values say which event a token belongs to."""
    layout = hand_layout(seconds=6, cells=6)
    ctx = layout_context(layout, 0.05)
    audio = layout.mask(Modality.AUDIO).nonzero().squeeze(1)
    first, second = audio[10:15].tolist(), audio[80:85].tolist()
    values = torch.zeros_like(ctx.values)
    values[..., 0] = 1.0                                   # silence
    values[:, :, first] = torch.tensor([0.0, 1.0] + [0.0] * (values.shape[-1] - 2))
    values[:, :, second] = torch.tensor([0.0, 0.0, 1.0] + [0.0] * (values.shape[-1] - 3))
    ctx.values = values + 0.001 * torch.randn(values.shape, generator=torch.Generator().manual_seed(1))
    scores = torch.ones(ctx.length)
    scores[first], scores[second] = 9.0, 8.0
    monkeypatch.setattr(acckv_mod, "redistributed_scores", lambda ctx, rows, mode, how: scores.clone())
    return ctx, set(first), set(second)


def test_acckv_with_diversity_keeps_both_brief_sounds_where_a_plain_top_k_keeps_one(monkeypatch):
    """Two ranked audio slots: a plain top-k spends both on the louder sound; diversity keeps one of each."""
    ctx, first, second = audio_events_context(monkeypatch)
    common = dict(salience=0.0, skeleton=0.0, merge_target="none", modality_floor=0.0, focusing=False,
                  flat_kurtosis_audio=0.0, flat_kurtosis_video=0.0)
    for diversity, expect_second in ((0.0, False), (20.0, True)):
        method = get_method("acckv", coverage="none", diversity=diversity, **common)
        keep = set(method.top_of(ctx, Modality.AUDIO, acckv_mod.redistributed_scores(ctx, None, "", ""), 2).tolist())
        assert keep & first, diversity
        assert bool(keep & second) == expect_second, diversity
