"""AccKV's `layer_schedule`: media budget per layer (flat, or PyramidKV's pyramid by depth, total fixed).
Each test fails if its ordering is inverted (a schedule that gives the deepest layer the most entries)."""

from __future__ import annotations

import pytest

from acckv_cli.methods import get_method
from acckv_cli.methods.pyramidkv import pyramid_budgets
from acckv_cli.methods.streaming import stream_refusal
from acckv_cli.methods import Budget
from test_baselines import N_LAYERS, clip, protected_count, run  # noqa: F401  (clip is a fixture)


def media_per_layer(clip, method, budget: float) -> list[int]:
    _, _, layout = clip
    _, _, _, cache = run(clip, method, budget)
    P = protected_count(layout)
    return [cache.layers[i].keys.shape[2] - P for i in range(N_LAYERS)]


@pytest.mark.parametrize("budget", [0.05, 0.2])
def test_pyramid_gives_early_layers_more_media_and_keeps_the_total(clip, budget):
    """Catches: the schedule indexed from the top (deepest layer largest), a total that drifts from the flat
    budget, or the schedule ignored (every layer the same)."""
    _, _, layout = clip
    n_media = int(layout.media_mask.sum())
    uniform = Budget(budget).media_tokens(n_media)
    kept = media_per_layer(clip, get_method("acckv", layer_schedule="pyramid", merge_target="none"), budget)
    assert kept == pyramid_budgets(n_media, N_LAYERS, uniform, 20.0).tolist()
    assert kept[0] > kept[-1] and all(a >= b for a, b in zip(kept, kept[1:]))
    assert abs(sum(kept) / N_LAYERS - uniform) <= 1


def test_flat_schedule_keeps_the_budget_in_every_layer(clip):
    _, _, layout = clip
    uniform = Budget(0.2).media_tokens(int(layout.media_mask.sum()))
    assert media_per_layer(clip, get_method("acckv", merge_target="none"), 0.2) == [uniform] * N_LAYERS


def test_a_smaller_beta_flattens_the_pyramid():
    steep, mild = (pyramid_budgets(1000, 6, 100, beta) for beta in (20.0, 2.0))
    assert steep[0] - steep[-1] > mild[0] - mild[-1] > 0
    assert int(steep.sum()) == int(mild.sum()) == 600


def test_a_pyramid_refuses_to_stream_and_flat_streams():
    assert stream_refusal(get_method("acckv")) is None
    reason = stream_refusal(get_method("acckv", layer_schedule="pyramid"))
    assert reason and "layer_schedule" in reason


def test_bad_schedule_values_are_refused():
    with pytest.raises(ValueError):
        get_method("acckv", layer_schedule="inverted")
    with pytest.raises(ValueError, match="layer_beta"):
        get_method("acckv", layer_beta=0.5)
