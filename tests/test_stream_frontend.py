"""The streaming front end in blocks: processor and encoders over many frame pairs / audio windows per call.

Qwen2.5-Omni's vision tower attends within one temporal patch (a frame pair: full-attention blocks per
temporal patch, windows inside it) and its audio tower within 2-s chunks of a window, so encoding a block of
frame pairs (windows) at once must give every step the rows per-chunk encoding gives — up to float rounding,
since matrix products over more rows may sum in another order. Tolerance: 1e-5 absolute in float32 (the
tiny model's rows are O(1); measured differences are ≤ 1e-6). Then the kept sets and answers must be those
of per-chunk streaming, for several step lengths, block bounds that split steps, and methods.
"""

from __future__ import annotations

import pytest
import torch

from conftest import synthetic_media
from acckv_cli.answer.frontend import ChunkEncoder, pair_bytes
from acckv_cli.answer.stream import StreamPrompt, StreamSession, auto_chunk_seconds, plan_steps
from acckv_cli.methods import Budget, get_method

QUESTION = "What instrument plays?"
TOLERANCE = 1e-5  # float32, absolute


@pytest.fixture(scope="module")
def media():
    """10.3 s, audio and video: five 2-s chunks and a partial one, three 4-s audio windows (tiny_lm_w4)."""
    return synthetic_media(seconds=10.3)


def _bound_for_pairs(lm, prompt, pairs: int) -> float:
    """A block bound (MB) that holds `pairs` frame pairs (video gets half of it when there is audio)."""
    return 2 * pairs * pair_bytes(lm, prompt.inputs["video_grid_thw"]) / 2**20 + 1e-3


def test_vision_tower_on_a_block_equals_it_per_frame_pair(tiny_lm_w4, media):
    """The vision tower on 5 frame pairs in one call equals it called on each pair alone (windowed attention
    and the temporal merge stay inside a pair)."""
    lm = tiny_lm_w4
    prompt = StreamPrompt.build_stream(lm, media)
    vp, visual = lm.processor.video_processor, lm.thinker.model
    frames = media.frames[:10]
    with torch.inference_mode():
        whole = vp(videos=[frames], return_tensors="pt", **prompt.video_kwargs)
        block = torch.cat(list(visual.get_video_features(whole["pixel_values_videos"], whole["video_grid_thw"]).pooler_output))
        pairs = []
        for k in range(5):
            one = vp(videos=[frames[2 * k:2 * k + 2]], return_tensors="pt", **prompt.video_kwargs)
            pairs.append(torch.cat(list(visual.get_video_features(one["pixel_values_videos"],
                                                                  one["video_grid_thw"]).pooler_output)))
    assert int(whole["video_grid_thw"][0, 0]) == 5 and block.shape[0] == 5 * pairs[0].shape[0]
    assert (block - torch.cat(pairs)).abs().max() <= TOLERANCE


@pytest.mark.parametrize("pairs_per_block", [3, 1000])
def test_block_inputs_equal_per_chunk_inputs(tiny_lm_w4, media, pairs_per_block):
    """Every step's decoder inputs from blocks (3 pairs: blocks that split 2-pair steps; 1000: the whole clip)
    equal per-chunk encoding within the tolerance; each frame pair and audio window is encoded once, in fewer
    calls."""
    lm = tiny_lm_w4
    prompt = StreamPrompt.build_stream(lm, media)
    steps = plan_steps(prompt.layout, 2.0)
    per_chunk = ChunkEncoder(lm, prompt, block_mb=None)
    blocks = ChunkEncoder(lm, prompt, block_mb=_bound_for_pairs(lm, prompt, pairs_per_block))
    for start, end in steps:
        a, b = per_chunk.embeds(start, end)["inputs_embeds"], blocks.embeds(start, end)["inputs_embeds"]
        assert (a - b).abs().max() <= TOLERANCE
    pairs = int(prompt.inputs["video_grid_thw"][0, 0])
    assert per_chunk.video.blocks == len(steps) - 1  # one call per step holding video (the last is audio only)
    assert blocks.video.blocks == -(-pairs // min(pairs_per_block, pairs))
    assert per_chunk.audio.calls == per_chunk.audio.encoded == blocks.audio.encoded == 3
    assert blocks.audio.calls < 3 and blocks.audio.cache == {} and blocks.video.rows is not None


@pytest.mark.parametrize("method, chunk_seconds, pairs_per_block", [("acckv", 2.0, 1000), ("acckv", 4.0, 5),
                                                                    ("snapkv", 2.0, 3), ("lookm", 6.0, 1000)])
def test_blocks_keep_what_per_chunk_streaming_keeps(tiny_lm_w4, media, method, chunk_seconds, pairs_per_block):
    """Same kept entries in every layer, same answer and first-answer logits within 1e-4 as per-chunk
    streaming (the front end as it was before blocks), with a budget that evicts."""
    lm = tiny_lm_w4
    reference = StreamSession(lm, media, chunk_seconds=chunk_seconds, block_mb=None)
    expected = reference.ask([QUESTION], get_method(method), Budget(40), "stream", 4)[0]
    bound = _bound_for_pairs(lm, reference.prompt, pairs_per_block)
    session = StreamSession(lm, media, chunk_seconds=chunk_seconds, block_mb=bound)
    answer = session.ask([QUESTION], get_method(method), Budget(40), "stream", 4)[0]
    assert session.last_encoder.video.blocks < reference.last_encoder.video.blocks
    assert answer.kept.keys() == expected.kept.keys()
    assert all(torch.equal(answer.kept[layer], expected.kept[layer]) for layer in expected.kept)
    assert answer.token_ids == expected.token_ids
    assert (answer.first_logits - expected.first_logits).abs().max() < 1e-4


def test_default_step_holds_enough_tokens(tiny_lm_w4, media):
    """Left to its default, a step is the fewest 2-s chunks holding ≥ 512 tokens on average (so a decoder
    forward amortises reading the weights); a dense clip keeps 2-s steps."""
    layout = StreamPrompt.build_stream(tiny_lm_w4, media).layout
    rate = int(layout.media_mask.sum()) / layout.duration_s
    span = auto_chunk_seconds(layout)
    assert span % 2 == 0 and span * rate >= 512 and (span == 2 or (span - 2) * rate < 512)
    assert auto_chunk_seconds(layout, min_tokens=1) == 2.0
    assert StreamSession(tiny_lm_w4, media).chunk_seconds == span


@pytest.mark.parametrize("method", ["acckv", "snapkv", "h2o"])
def test_scoring_from_the_attentions_own_queries_keeps_the_same_entries(tiny_lm_w4, media, monkeypatch, method):
    """Streaming scores a step from the queries the attention module computed (kept by the stream's attention
    function) instead of projecting the hidden states again: same kept sets and answer as re-projecting."""
    from acckv_cli.methods import streaming
    from acckv_cli.methods.base import LayerContext

    def ask():
        session = StreamSession(tiny_lm_w4, media, chunk_seconds=2.0)
        return session.ask([QUESTION], get_method(method), Budget(40), "stream", 3)[0]

    reused = ask()
    assert streaming._QUERIES == {}  # every kept query was used by its hook, none outlives the stream
    monkeypatch.setattr(streaming.StreamLayerContext, "accumulate", LayerContext.accumulate)
    projected = ask()
    assert all(torch.equal(reused.kept[layer], projected.kept[layer]) for layer in projected.kept)
    assert reused.token_ids == projected.token_ids
    assert (reused.first_logits - projected.first_logits).abs().max() < 1e-5
