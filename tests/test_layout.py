"""Token layout on interleaved audio+video, video-only and audio-only prompts, for both model families."""

from __future__ import annotations

import math

import torch

from acckv_cli.model.layout import Modality, build_layout, layout_for_inputs
from conftest import Prompt, synthetic_media


def test_av_layout_counts_and_order(av_prompt):
    lay = av_prompt.layout
    counts = lay.counts()
    assert counts["video"] > 0 and counts["audio"] == 100  # 4 s at 25 audio tokens/s
    assert counts["question"] == len(av_prompt.inputs["input_ids"][0]) - sum(
        v for k, v in counts.items() if k != "question")
    assert counts["system"] > 0 and counts["delim"] >= 8
    # Qwen interleaves 2-s chunks: video of chunk 0, audio of chunk 0, video of chunk 1, ...
    media = lay.modality[lay.media_mask]
    switches = int((media[1:] != media[:-1]).sum())
    assert switches == 3, "expected V A V A for a 4-s clip"


def test_av_layout_times_and_frames(av_prompt):
    lay = av_prompt.layout
    video, audio = lay.mask(Modality.VIDEO), lay.mask(Modality.AUDIO)
    assert torch.equal(lay.time_s[video].unique(), torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert torch.allclose(lay.time_s[audio], torch.arange(100) * 0.04, atol=1e-5)
    assert torch.equal(lay.frame_pair[video].unique(), torch.tensor([0, 1, 2, 3], dtype=torch.int32))
    assert (lay.frame_pair[~video] == -1).all() and torch.isnan(lay.time_s[lay.protected_mask]).all()
    grid = av_prompt.inputs["video_grid_thw"][0]
    assert int(lay.row[video].max()) + 1 == int(grid[1]) // 2
    assert int(lay.col[video].max()) + 1 == int(grid[2]) // 2
    # Audio in the same chunk as a frame pair shares its time: chunk 0 = seconds [0, 2).
    first_chunk_audio = audio.nonzero().squeeze(1)[:50]
    assert float(lay.time_s[first_chunk_audio].max()) < 2.0


def test_question_and_post_media_text(av_prompt, tiny):
    _, processor = tiny
    lay = av_prompt.layout
    ids = av_prompt.inputs["input_ids"][0]
    question_ids = ids[lay.mask(Modality.QUESTION)]
    assert processor.tokenizer.decode(question_ids) == "What instrument plays?"
    post = lay.post_media_text_mask()
    assert post.any() and int(post.nonzero().min()) > int(lay.media_mask.nonzero().max())


def test_video_only_layout(video_prompt):
    lay = video_prompt.layout
    assert lay.counts()["audio"] == 0 and lay.counts()["video"] > 0
    assert not video_prompt.use_audio_in_video
    assert torch.equal(lay.time_s[lay.mask(Modality.VIDEO)].unique(), torch.tensor([0.0, 1.0, 2.0, 3.0]))


def test_audio_only_layout(audio_prompt):
    lay = audio_prompt.layout
    assert lay.counts()["video"] == 0 and lay.counts()["audio"] == 100
    assert torch.allclose(lay.time_s[lay.mask(Modality.AUDIO)], torch.arange(100) * 0.04, atol=1e-5)
    assert math.isclose(lay.duration_s, 3.96, abs_tol=1e-4)


def test_second_bins(av_prompt):
    lay = av_prompt.layout
    bins = lay.second_bins()
    assert set(bins[lay.media_mask].tolist()) == {0, 1, 2, 3}
    assert (bins[lay.protected_mask] == -1).all()


def test_build_layout_uses_each_runs_origin():
    """Two separate media runs each start their clock at 0 (times come from positions, not indices)."""
    labels = torch.tensor([1, 5, 5, 1, 5, 5], dtype=torch.int8)
    positions = torch.tensor([[0, 10, 11, 12, 40, 65]] * 3)
    lay = build_layout(positions, labels, position_id_per_seconds=25, second_per_grid=None)
    assert torch.allclose(lay.time_s[[1, 2, 4, 5]], torch.tensor([0.0, 0.04, 0.0, 1.0]))


def test_fps_reaches_the_processor(tiny_lm):
    """Pitfall 2: the processor assumes 2 fps unless told; our inputs carry the true sampled rate."""
    prompt = Prompt(tiny_lm, synthetic_media(seconds=2.0, fps=4.0))
    assert float(prompt.inputs["video_second_per_grid"][0]) == 0.5
    times = prompt.layout.time_s[prompt.layout.mask(Modality.VIDEO)].unique()
    # mRoPE time is an integer position at 25 per second: 0.5 s rounds to 12/25 = 0.48 s.
    assert torch.allclose(times, torch.tensor([0.0, 0.5, 1.0, 1.5]), atol=0.021)
    assert torch.equal(prompt.layout.frame_pair[prompt.layout.mask(Modality.VIDEO)].unique(),
                       torch.tensor([0, 1, 2, 3], dtype=torch.int32))


def test_audio_really_reaches_the_prompt(av_prompt):
    """Pitfall 13: a wrong processor keyword silently drops the audio; ours yields audio tokens."""
    assert av_prompt.layout.counts()["audio"] > 0
    assert "mm_token_type_ids" not in av_prompt.inputs  # pitfall 17: popped before generate


def test_use_audio_in_video_travels_beside_the_inputs(tiny_lm, av_prompt):
    """Pitfall: the processor output does not carry the flag; without it positions silently change."""
    from acckv_cli.model.prompt import MediaPrompt
    from conftest import synthetic_media

    assert "use_audio_in_video" not in av_prompt.inputs and av_prompt.use_audio_in_video
    prompt = MediaPrompt.build(tiny_lm, synthetic_media())
    assert prompt.use_audio_in_video
    inputs = av_prompt.inputs
    wrong = layout_for_inputs(tiny_lm.thinker, tiny_lm.processor, inputs, False)
    assert not torch.equal(wrong.positions, av_prompt.layout.positions)
    assert int(wrong.positions.max()) > int(av_prompt.layout.positions.max())  # audio after video, not interleaved


# --- Qwen3-Omni: per-token interleave, 13 float positions per second, its own token names --------------

def test_qwen3_av_layout_counts_labels_and_order(q3_av_prompt, tiny_q3):
    _, processor = tiny_q3
    lay, ids = q3_av_prompt.layout, q3_av_prompt.inputs["input_ids"][0]
    counts = lay.counts()
    assert (counts["video"], counts["audio"]) == (64, 52)  # 16 per frame pair; 13 audio tokens per second
    assert counts["system"] == 0  # Qwen3's template adds no system turn: nothing may assume one
    names = processor.tokenizer.convert_ids_to_tokens(ids.tolist())
    delimiters = {names[i] for i in lay.mask(Modality.DELIM).nonzero().squeeze(1).tolist()}
    assert delimiters == {"<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|audio_start|>",
                          "<|audio_end|>"}
    assert processor.tokenizer.decode(ids[lay.mask(Modality.QUESTION)]) == "What instrument plays?"
    # merged per token by time (16 video, 13 audio per 1-s frame pair), not Qwen2.5's 2-s chunks
    media = lay.modality[lay.media_mask].tolist()
    assert media == ([int(Modality.VIDEO)] * 16 + [int(Modality.AUDIO)] * 13) * 4
    assert lay.positions.dtype == torch.float32 and lay.seconds_per_chunk is None


def test_qwen3_times_come_from_float_positions_at_13_per_second(q3_lm):
    """At 3 fps a frame pair spans 2/3 s = 8.67 positions: times need the float positions and the rate 13.

    Expected times come from the sampling (frame pair g starts at g·2/3 s, audio token k at k/13 s), not from
    the layout; an int cast of the positions or the config class's default rate (25) misses them."""
    prompt = Prompt(q3_lm, synthetic_media(seconds=4.0, fps=3.0))
    lay = prompt.layout
    video, audio = lay.mask(Modality.VIDEO), lay.mask(Modality.AUDIO)
    expected_video = torch.arange(6.0) * 2 / 3
    assert torch.allclose(lay.time_s[video].unique(), expected_video, atol=1e-5)
    assert torch.equal(lay.frame_pair[video].unique(), torch.arange(6, dtype=torch.int32))
    assert torch.allclose(lay.time_s[audio], torch.arange(52.0) / 13, atol=1e-5)
    spg = float(prompt.inputs["video_second_per_grid"][0])
    as_int = build_layout(lay.positions.long(), lay.modality, 13.0, spg)
    assert (as_int.time_s[video].unique() - expected_video).abs().max() > 0.04
    at_25 = build_layout(lay.positions, lay.modality, 25.0, spg)
    assert not torch.allclose(at_25.time_s[audio], torch.arange(52.0) / 13, atol=1e-2)


def test_qwen3_video_only_and_audio_only_layouts(q3_lm):
    video = Prompt(q3_lm, synthetic_media(audio=False), "What colour is the square?")
    assert not video.use_audio_in_video and video.layout.counts()["audio"] == 0
    assert torch.equal(video.layout.time_s[video.layout.mask(Modality.VIDEO)].unique(), torch.arange(4.0))
    audio = Prompt(q3_lm, synthetic_media(video=False))
    lay = audio.layout
    assert lay.counts()["video"] == 0 and lay.counts()["audio"] == 52
    assert torch.allclose(lay.time_s[lay.mask(Modality.AUDIO)], torch.arange(52.0) / 13, atol=1e-5)
    assert math.isclose(lay.duration_s, 51 / 13, abs_tol=1e-5)
