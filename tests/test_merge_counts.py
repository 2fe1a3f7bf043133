"""Merge counts: under streaming a merged entry averages every token it absorbed, over any number of steps.

A streamed cache merges again after every step, so an entry kept at step s may already stand for many tokens
when step s + 1 merges more into it (or merges it into another entry). `merge_counted` weighs every entry by
the tokens it stands for; `StreamCompression` carries those counts from step to step.

Checks: (1) merging in two rounds with counts gives each slot the plain mean of its members, read off exactly
with one-hot values; ignoring the counts does not (so the check can fail); (2) a clip that fits one streaming
step gives one-shot merging's kept sets, merged keys/values and answer (LOOK-M and AccKV); (3) over many
steps, layer 0 (whose keys/values do not depend on the cache) conserves Σ count·value: every token's value is
in the cache exactly once, with weight 1.
"""

from __future__ import annotations

import pytest
import torch

from conftest import synthetic_media
from acckv_cli.answer.session import ClipSession
from acckv_cli.answer.stream import StreamSession
from acckv_cli.methods import Budget, get_method
from acckv_cli.methods.merge import merge_counted

QUESTION = "What instrument plays?"


def _round(keys, values, keep, counts=None):
    """One merge of every evicted entry into the kept ones (avg rule)."""
    candidates = torch.ones(keys.shape[2], dtype=torch.bool)
    return merge_counted(keys, values, keep, candidates, rule="avg", counts=counts)


def _members_are_averaged(values: torch.Tensor, counts: torch.Tensor) -> bool:
    """One-hot values: slot t averages its members uniformly iff its nonzero weights all equal 1 / count_t."""
    for head in range(values.shape[1]):
        for slot, count in zip(values[0, head], counts[head]):
            members = slot[slot > 0]
            if members.numel() != round(float(count)) or not torch.allclose(members, 1 / count, atol=1e-6):
                return False
    return True


def test_two_merge_rounds_with_counts_average_every_absorbed_token():
    """Round 1: 12 tokens → 4 kept; round 2: those 4 + 8 new → 5 kept (merged slots evicted too). With counts
    every final slot is the mean of the original tokens it absorbed (keys too) and the counts add up to 20."""
    gen = torch.Generator().manual_seed(0)
    kv, total = 2, 20
    keys = torch.randn(1, kv, total, 8, generator=gen)
    values = torch.eye(total).expand(1, kv, total, total).clone()   # token j's value is the one-hot e_j
    k1, v1, _, c1 = _round(keys[:, :, :12], values[:, :, :12], torch.tensor([0, 3, 7, 10]))
    assert _members_are_averaged(v1, c1) and c1.sum(1).tolist() == [12.0, 12.0]

    step_k, step_v = torch.cat([k1, keys[:, :, 12:]], 2), torch.cat([v1, values[:, :, 12:]], 2)
    keep = torch.tensor([[1, 4, 6, 9, 11], [0, 2, 5, 8, 10]])        # a set per KV head, old slots among them
    weights = torch.cat([c1, torch.ones(kv, 8)], 1)
    k2, v2, _, c2 = _round(step_k, step_v, keep, weights)
    assert _members_are_averaged(v2, c2)
    assert c2.sum(1).tolist() == [20.0, 20.0]                        # every token counted once
    for head in range(kv):
        for slot in range(keep.shape[1]):
            members = v2[0, head, slot].nonzero().squeeze(1)
            assert torch.allclose(k2[0, head, slot], keys[0, head, members].mean(0), atol=1e-5)

    _, v_plain, _, c_plain = _round(step_k, step_v, keep)            # what re-merging without counts did
    assert not _members_are_averaged(v_plain, c2)


def test_counts_of_one_reproduce_the_one_shot_merge_for_every_rule():
    """`merge_counted` with counts of 1 is bit for bit the one-shot merge (weighted sums, then one division)."""
    from acckv_cli.methods.merge import merge_into_kept

    gen = torch.Generator().manual_seed(1)
    keys, values = torch.randn(1, 2, 30, 8, generator=gen), torch.randn(1, 2, 30, 8, generator=gen)
    keep, media = torch.tensor([0, 4, 9, 17, 22, 29]), torch.arange(30) > 2
    for rule in ("avg", "pivot", "weighted"):
        k, v, merged = merge_into_kept(keys, values, keep, media, rule=rule)
        k1, v1, merged1, counts = merge_counted(keys, values, keep, media, rule=rule, counts=torch.ones(2, 30))
        assert torch.equal(k, k1) and torch.equal(v, v1) and merged == merged1
        assert float(counts.sum()) == pytest.approx(2 * (6 + merged["all"]), abs=0.05)  # kept + merged entries


@pytest.fixture(scope="module")
def clip():
    return synthetic_media(seconds=6.3)


@pytest.mark.parametrize("method, params", [("lookm", {}), ("lookm", {"merge": "avg"}),
                                            ("acckv", {"score_queries": "all", "focusing": False,
                                                       "calibration": False})])
def test_a_clip_in_one_step_merges_as_one_shot(tiny_lm_w4, clip, method, params):
    """A clip that fits one streaming step: the same kept entries, merged keys/values and answer as the one-shot
    `context` prefill (scoring reads every row in both), and counts that cover every token the step merged."""
    compressor, budget = get_method(method, **params), Budget(40)
    one_shot = ClipSession(tiny_lm_w4, clip)
    reference = one_shot.media_cache(compressor, budget)
    expected = one_shot.answer(QUESTION, reference, "context", compressor, budget, 3)
    session = StreamSession(tiny_lm_w4, clip, chunk_seconds=8.0)
    streamed_cache = session.media_cache(compressor, budget)
    assert len(session.last_stream.steps) == 1
    answer = session.answer(QUESTION, streamed_cache, "stream", compressor, budget, 3)
    for layer, (ref, got) in enumerate(zip(reference.cache.layers, streamed_cache.cache.layers)):
        assert torch.equal(reference.run.layers[layer]["keep"].sort(-1).values, answer.kept[layer])
        assert torch.allclose(ref.keys, got.keys, atol=1e-4) and torch.allclose(ref.values, got.values, atol=1e-4)
    assert answer.token_ids == expected.token_ids
    assert (answer.first_logits - expected.first_logits).abs().max() < 1e-4
    counts, layout = session.last_stream.run.counts, session.prompt.layout
    assert sorted(counts) == list(range(len(streamed_cache.cache.layers)))
    for layer, c in counts.items():  # each prompt token counted once, if it had a slot to merge into
        assert c.shape == streamed_cache.cache.layers[layer].keys.shape[1:3] and int(c.max()) > 1
        kept = answer.kept[layer] if answer.kept[layer].ndim == 2 else answer.kept[layer][None].expand(c.shape[0], -1)
        for head, row in enumerate(kept):
            # LOOK-M merges into any kept entry; AccKV only into one of the same modality (none kept: dropped)
            mergeable = layout.protected_mask | (layout.media_mask if method == "lookm" else
                                                 torch.isin(layout.modality, layout.modality[row]))
            assert float(c[head].sum()) == float(mergeable.sum())


def test_many_steps_conserve_every_token_once(tiny_lm_w4):
    """LOOK-M with the avg rule over 6 streaming steps: in layer 0, Σ count·value over the kept entries equals
    the sum of every prompt token's value in the full (uncompressed) prefill, per KV head, and the counts sum
    to the prompt's length. Merging without counts would weigh earlier-absorbed tokens less (test above)."""
    media = synthetic_media(seconds=10.3)
    session = StreamSession(tiny_lm_w4, media, chunk_seconds=2.0)
    cache = session.media_cache(get_method("lookm", merge="avg"), Budget(40))
    assert len(session.last_stream.steps) == 6
    full = ClipSession(tiny_lm_w4, media).media_cache(get_method("full"), Budget(1.0)).cache.layers[0].values
    counts = session.last_stream.run.counts[0]                       # [KV, kept]
    kept_values = cache.cache.layers[0].values[0]                    # [KV, kept, D]
    assert counts.sum(1).tolist() == [float(full.shape[2])] * full.shape[1]
    weighted = (counts[:, :, None] * kept_values).sum(1)
    assert torch.allclose(weighted, full[0].sum(1), rtol=1e-4, atol=1e-3)
    assert int(counts.max()) > 1 and kept_values.shape[1] < full.shape[2]
