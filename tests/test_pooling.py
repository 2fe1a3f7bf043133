"""AccKV's `pooling` field: the ranking averaged over neighbours of the same modality, as SnapKV pools attention.
The ordering test fails if pooling is dropped or mixes modalities."""

from __future__ import annotations

import pytest
import torch

from acckv_cli.methods import get_method
from acckv_cli.model.layout import Modality
from test_baselines import hand_layout, layout_context


def audio_ranking(ctx, spike: int, cluster: list[int]) -> torch.Tensor:
    """A ranking of 0 everywhere but a lone audio spike (10) and a run of audio tokens at 6."""
    audio = ctx.layout.mask(Modality.AUDIO).nonzero().squeeze(1)
    ranking = torch.zeros(ctx.length)
    ranking[audio[spike]] = 10.0
    ranking[audio[cluster]] = 6.0
    return ranking, audio


def reference_pool(values: list[float], kernel: int) -> list[float]:
    """Plain average over `kernel` neighbours, zero padding counted (avg_pool1d's count_include_pad)."""
    half = kernel // 2
    padded = [0.0] * half + values + [0.0] * half
    return [sum(padded[i:i + kernel]) / kernel for i in range(len(values))]


def test_a_run_of_tokens_outranks_a_lone_spike_once_pooled():
    ctx = layout_context(hand_layout(seconds=6, cells=6), 0.1)
    ranking, audio = audio_ranking(ctx, spike=20, cluster=list(range(60, 65)))
    present = [Modality.VIDEO, Modality.AUDIO]
    plain = get_method("acckv", pooling=1).pooled(ctx, ranking, present)
    pooled = get_method("acckv", pooling=5).pooled(ctx, ranking, present)
    assert int(audio[plain[audio].argmax()]) == int(audio[20])          # pooling 1: the ranking itself
    assert int(audio[pooled[audio].argmax()]) == int(audio[62])         # the run's centre wins
    assert torch.equal(plain, ranking)


@pytest.mark.parametrize("kernel", [3, 7])
def test_pooling_equals_the_plain_average_inside_each_modality(kernel):
    ctx = layout_context(hand_layout(seconds=6, cells=6), 0.1)
    ranking = torch.randn(ctx.length, generator=torch.Generator().manual_seed(kernel))
    present = [Modality.VIDEO, Modality.AUDIO]
    pooled = get_method("acckv", pooling=kernel).pooled(ctx, ranking, present)
    for kind in present:  # neighbours are the modality's own tokens, across the other modality's runs
        idx = ctx.layout.mask(kind).nonzero().squeeze(1)
        expected = torch.tensor(reference_pool(ranking[idx].tolist(), kernel))
        torch.testing.assert_close(pooled[idx], expected)
    text = ~ctx.layout.mask(Modality.VIDEO, Modality.AUDIO)
    assert torch.equal(pooled[text], ranking[text])
    per_head = get_method("acckv", pooling=kernel).pooled(ctx, torch.stack([ranking, -ranking]), present)
    torch.testing.assert_close(per_head[1], -pooled)                      # one pooled row per KV head


@pytest.mark.parametrize("kernel", [0, 2, -3])
def test_an_even_or_non_positive_kernel_is_refused(kernel):
    with pytest.raises(ValueError, match="pooling"):
        get_method("acckv", pooling=kernel)
