"""Dense auxiliary targets for training the demo model: what is on screen and what plays, per token.

Answer tokens alone give a few bits of signal per clip, and a from-scratch vision tower learns shapes from
them very slowly (the first demo model reached 47 % on video questions after 40 minutes). Here every media
token gets a label straight from the clip's `ClipSpec`:

- each video token (one 28×28-pixel cell of a frame pair after the vision merger) is labelled with the
  colour of the event covering most of that cell, or "none";
- the tokens of each object (one event in one frame pair) are max-pooled and labelled with its shape —
  shape belongs to the silhouette, not to a cell: with per-cell shape labels neither this vision tower
  nor a small CNN got above chance in a few hundred steps, while pooled per object it learns in ~300;
- each audio token (1/25 s) is labelled with the instrument playing at its time, and — one decoder layer
  up — with the shape and colour on screen at that moment, which teaches the decoder to bring the
  co-occurring picture into the audio stream (what alignment questions need).

Small linear heads read these labels off the encoder outputs and a middle decoder layer during training
only; they are not part of the saved model, which stays a plain Qwen2.5-Omni thinker.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from acckv_cli.synth.avqa import ANSWER_COLOURS
from acckv_cli.synth.events import INSTRUMENTS, SHAPES, ClipSpec
from acckv_cli.synth.video import event_index_map

SHAPE_CLASSES = ("none", *SHAPES)
COLOUR_CLASSES = ("none", *ANSWER_COLOURS)
INSTRUMENT_CLASSES = ("none", *INSTRUMENTS)
AUDIO_TOKENS_PER_SECOND = 25  # Whisper-style tower: 100 mel frames/s, conv stride 2, pooling 2
MIN_COVER = 0.15  # a cell is labelled with a shape when the shape covers at least this much of it


def cell_coverage(index_map: np.ndarray, rows: int, cols: int, n_events: int) -> np.ndarray:
    """(rows, cols, n_events + 1) fraction of each grid cell covered by background (0) and each event."""
    height, width = index_map.shape
    ys = np.linspace(0, height, rows + 1).round().astype(int)
    xs = np.linspace(0, width, cols + 1).round().astype(int)
    onehot = np.eye(n_events + 1, dtype=np.float32)[index_map]
    sums = np.add.reduceat(np.add.reduceat(onehot, ys[:-1], axis=0), xs[:-1], axis=1)
    area = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    return sums / area[..., None]


def video_token_targets(spec: ClipSpec, grid_thw: tuple[int, int, int], merge: int = 2,
                        temporal_patch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Which visual event (index into `spec.visual_events`, -1 for none) and which colour class each video
    token of a clip shows, in the order the vision merger emits them.

    `grid_thw` is the processor's (t, h, w) patch grid; tokens run over (t, h / merge, w / merge). A token
    covers `temporal_patch` consecutive frames of the spec (frame i at i / spec.fps); their coverages are
    averaged and the event covering most of the cell wins if it covers at least `MIN_COVER`.
    """
    t, h, w = (int(x) for x in grid_thw)
    rows, cols, events = h // merge, w // merge, spec.visual_events
    colour_of = np.array([0] + [COLOUR_CLASSES.index(e.colour) for e in events])
    shown, colours = [], []
    for ti in range(t):
        frames = [min(ti * temporal_patch + k, spec.num_frames - 1) for k in range(temporal_patch)]
        cover = np.mean([cell_coverage(event_index_map(spec, f / spec.fps), rows, cols, len(events))
                         for f in frames], axis=0)
        best = cover[..., 1:].argmax(-1) + 1 if events else np.zeros((rows, cols), dtype=int)
        covered = np.take_along_axis(cover, best[..., None], -1)[..., 0] >= MIN_COVER
        event = np.where(covered, best, 0).reshape(-1)
        shown.append(event - 1)
        colours.append(colour_of[event])
    return np.concatenate(shown), np.concatenate(colours)


def object_targets(spec: ClipSpec, shown: np.ndarray, tokens_per_step: int) -> tuple[np.ndarray, np.ndarray]:
    """Group video tokens into objects — one event in one frame pair — and give each object its shape.

    Returns (object id per token, -1 for background; shape class per object). Shape is a property of the
    whole silhouette, not of a 28-pixel cell (a cell inside a circle looks like a cell inside a square),
    so it is learnt from the object's tokens pooled together.
    """
    step = np.arange(len(shown)) // tokens_per_step
    key = np.where(shown >= 0, step * (len(spec.visual_events) + 1) + shown, -1)
    keys, object_id = np.unique(key, return_inverse=True)
    object_id = np.where(key >= 0, object_id - (keys[0] < 0), -1)
    events = [k % (len(spec.visual_events) + 1) for k in keys if k >= 0]
    shapes = np.array([SHAPE_CLASSES.index(spec.visual_events[e].shape) for e in events], dtype=np.int64)
    return object_id, shapes


def audio_token_targets(spec: ClipSpec, n_tokens: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instrument playing, and shape and colour on screen, at the middle of each audio token's 40 ms."""
    instrument, shape, colour = (np.zeros(n_tokens, dtype=np.int64) for _ in range(3))
    for j in range(n_tokens):
        t = (j + 0.5) / AUDIO_TOKENS_PER_SECOND
        playing = [e for e in spec.sound_events if e.active(t)]
        on_screen = [e for e in spec.visual_events if e.active(t)]
        if playing:
            instrument[j] = INSTRUMENT_CLASSES.index(playing[-1].instrument)
        if on_screen:  # the last-drawn event is the one on top
            shape[j] = SHAPE_CLASSES.index(on_screen[-1].shape)
            colour[j] = COLOUR_CLASSES.index(on_screen[-1].colour)
    return instrument, shape, colour


def batch_targets(specs: list[ClipSpec], video_grid_thw: torch.Tensor,
                  audio_tokens_per_clip: list[int], merge: int = 2) -> dict[str, torch.Tensor]:
    """Targets for a batch, concatenated over clips in batch order (the order of the encoders' outputs)."""
    colours, objects, shapes, audio, offset = [], [], [], [], 0
    for spec, grid in zip(specs, video_grid_thw.tolist()):
        shown, colour = video_token_targets(spec, tuple(grid), merge)
        object_id, shape = object_targets(spec, shown, grid[1] * grid[2] // merge ** 2)
        colours.append(colour)
        objects.append(np.where(object_id >= 0, object_id + offset, -1))
        shapes.append(shape)
        offset += len(shape)
    audio = [audio_token_targets(s, n) for s, n in zip(specs, audio_tokens_per_clip)]
    cat = lambda parts: torch.from_numpy(np.concatenate(parts)).long()  # noqa: E731
    return {"video_colour": cat(colours), "video_object": cat(objects), "object_shape": cat(shapes),
            "audio_instrument": cat([a[0] for a in audio]), "audio_sees_shape": cat([a[1] for a in audio]),
            "audio_sees_colour": cat([a[2] for a in audio])}


class AuxiliaryHeads(nn.Module):
    """Linear probes on the media tokens; trained with the model, thrown away afterwards."""

    def __init__(self, hidden: int):
        super().__init__()
        self.object_shape = nn.Linear(hidden, len(SHAPE_CLASSES))
        self.video_colour = nn.Linear(hidden, len(COLOUR_CLASSES))
        self.audio_instrument = nn.Linear(hidden, len(INSTRUMENT_CLASSES))
        self.audio_sees_shape = nn.Linear(hidden, len(SHAPE_CLASSES))
        self.audio_sees_colour = nn.Linear(hidden, len(COLOUR_CLASSES))

    def losses(self, video: torch.Tensor, audio: torch.Tensor, audio_mid: torch.Tensor,
               targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cross-entropy per head. video: (Nv, hidden) merger outputs; audio, audio_mid: (Na, hidden)."""
        ce = nn.functional.cross_entropy
        return {"object_shape": ce(self.object_shape(max_per_object(video, targets["video_object"])),
                                   targets["object_shape"]),
                "video_colour": ce(self.video_colour(video), targets["video_colour"]),
                "audio_instrument": ce(self.audio_instrument(audio), targets["audio_instrument"]),
                "audio_sees_shape": ce(self.audio_sees_shape(audio_mid), targets["audio_sees_shape"]),
                "audio_sees_colour": ce(self.audio_sees_colour(audio_mid), targets["audio_sees_colour"])}


def max_per_object(tokens: torch.Tensor, object_id: torch.Tensor) -> torch.Tensor:
    """(n_objects, hidden) element-wise max over each object's tokens; tokens with id -1 are ignored.

    Max rather than mean: a few tokens (a corner, a point of the star) may carry the shape, as long as
    some token of the object does.
    """
    keep = object_id >= 0
    n_objects = int(object_id.max()) + 1 if keep.any() else 0
    out = tokens.new_zeros(n_objects, tokens.shape[-1])
    index = object_id[keep][:, None].expand(-1, tokens.shape[-1])
    return out.scatter_reduce(0, index, tokens[keep], "amax", include_self=False)


@contextmanager
def encoder_outputs(thinker) -> Iterator[dict[str, torch.Tensor]]:
    """Capture the vision merger's and the audio tower's outputs during a forward pass.

    The tensors are stored when the hooks fire: `get_video_features` later replaces `pooler_output` on the
    same output object with a tuple of per-clip splits.
    """
    store: dict[str, torch.Tensor] = {}
    hooks = [thinker.model.visual.register_forward_hook(lambda m, a, out: store.__setitem__("video", out.pooler_output)),
             thinker.model.audio_tower.register_forward_hook(
                 lambda m, a, out: store.__setitem__("audio", out.last_hidden_state))]
    try:
        yield store
    finally:
        for hook in hooks:
            hook.remove()
