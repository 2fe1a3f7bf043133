"""Per-token training targets of the demo model: right cell, right time, right token order."""

from __future__ import annotations

import numpy as np
import pytest

import torch

from acckv_cli.demo.auxiliary import (COLOUR_CLASSES, INSTRUMENT_CLASSES, SHAPE_CLASSES, audio_token_targets,
                                      batch_targets, cell_coverage, max_per_object, object_targets,
                                      video_token_targets)
from acckv_cli.synth.events import COLOURS, ClipSpec, SoundEvent, VisualEvent
from acckv_cli.synth.render import render_frames


def clip(**visual) -> ClipSpec:
    event = VisualEvent(**{"shape": "square", "colour": "red", "start_s": 1.0, "end_s": 3.0, "x0": 0.25,
                           "y0": 0.25, "size": 0.4, **visual})
    return ClipSpec(duration_s=4, fps=2.0, visual_events=(event,),
                    sound_events=(SoundEvent("drum", 2.0, 4.0),))


def test_cell_coverage_fractions_sum_to_one():
    index_map = np.zeros((10, 12), dtype=np.uint8)
    index_map[:5, :6] = 1
    cover = cell_coverage(index_map, rows=2, cols=2, n_events=1)
    assert np.allclose(cover.sum(-1), 1)
    assert cover[0, 0, 1] == 1 and cover[1, 1, 1] == 0


def test_video_targets_follow_place_and_time():
    spec = clip()
    shown, colours = video_token_targets(spec, (4, 10, 12))  # 4 frame pairs of 5 × 6 merged cells
    shown, colours = shown.reshape(4, 5, 6), colours.reshape(4, 5, 6)
    assert shown[0].max() == -1  # frames at 0 and 0.5 s: nothing on screen yet
    assert shown[1, 1, 1] == 0 and colours[1, 1, 1] == COLOUR_CLASSES.index("red")
    assert shown[1, 4, 5] == -1 and colours[1, 4, 5] == 0  # bottom-right corner: background
    assert shown[1, 3:, 3:].max() == -1  # the square sits in the top-left quarter


def test_objects_are_one_event_in_one_frame_pair():
    spec = clip()
    shown, _ = video_token_targets(spec, (4, 10, 12))
    object_id, shapes = object_targets(spec, shown, tokens_per_step=30)
    assert list(shapes) == [SHAPE_CLASSES.index("square")] * 2  # on screen in frame pairs 1 and 2
    per_step = object_id.reshape(4, 30)
    assert set(per_step[1]) == {-1, 0} and set(per_step[2]) == {-1, 1} and per_step[[0, 3]].max() == -1


def test_batch_objects_are_numbered_across_clips():
    targets = batch_targets([clip(), clip(shape="star")], torch.tensor([[4, 10, 12]] * 2), [100, 100])
    assert targets["object_shape"].tolist() == [SHAPE_CLASSES.index("square")] * 2 + [SHAPE_CLASSES.index("star")] * 2
    assert targets["video_object"].max() == 3 and len(targets["video_object"]) == 240
    assert len(targets["audio_instrument"]) == 200


def test_max_per_object_ignores_background_tokens():
    tokens = torch.tensor([[1.0, 5.0], [3.0, 0.0], [9.0, 9.0], [2.0, 7.0]])
    pooled = max_per_object(tokens, torch.tensor([0, 0, -1, 1]))
    assert pooled.tolist() == [[3.0, 5.0], [2.0, 7.0]]


def test_video_targets_are_in_the_order_of_the_processor_tokens(demo_processor):
    """Cells labelled red must be red in the processor's pixel patches, in merger order (t, row, col)."""
    spec = clip(x0=0.7, y0=0.3, x1=0.3, y1=0.7, colour="blue", shape="circle")
    frames = render_frames(spec)
    out = demo_processor.video_processor(videos=[frames], fps=2.0, cap_pixels_per_frame=True, return_tensors="pt")
    grid = tuple(out["video_grid_thw"][0].tolist())
    shown, colours = video_token_targets(spec, grid)
    pixels = out["pixel_values_videos"].reshape(len(shown), 4, 3, -1).mean(dim=(1, 3)).numpy()
    proc = demo_processor.video_processor
    rgb = (pixels * np.array(proc.image_std) + np.array(proc.image_mean)) * 255
    blue = colours == COLOUR_CLASSES.index("blue")
    assert blue.sum() >= 4 and (shown[blue] == 0).all()
    # How far each token's mean colour has moved from the background towards blue, in [0, 1].
    gray, target = np.array(COLOURS["gray"]), np.array(COLOURS["blue"])
    blueness = ((rgb - gray) @ (target - gray)) / ((target - gray) @ (target - gray))
    bluest = np.argsort(-blueness)[:blue.sum()]
    assert blue[bluest].mean() >= 0.8  # a wrong token order would match about blue.mean() of them
    assert blueness[~blue].max() < 0.5


def test_audio_targets_name_what_plays_and_what_is_seen():
    spec = clip()
    instrument, shape, colour = audio_token_targets(spec, n_tokens=100)  # 25 tokens per second
    assert (instrument[:50] == 0).all() and (instrument[50:] == INSTRUMENT_CLASSES.index("drum")).all()
    assert (shape[:25] == 0).all() and (shape[25:75] == SHAPE_CLASSES.index("square")).all()
    assert (colour[75:] == 0).all()


@pytest.fixture(scope="module")
def demo_processor():
    from acckv_cli.demo.train import DEMO_SPEC
    from acckv_cli.testing.tiny import build_processor

    return build_processor(min_pixels=DEMO_SPEC.min_pixels, max_pixels=DEMO_SPEC.max_pixels)
