"""Frame rendering for synthetic clips: flat-coloured shapes on a plain background (numpy + PIL).

Shapes are drawn without anti-aliasing so that every shape pixel has exactly its palette colour: ground
truth ("the square is blue") can then be checked pixel-exactly on the raw frames, and colours stay
unambiguous after encoding. Events are drawn in list order, so later events appear on top.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from .events import COLOURS, ClipSpec, VisualEvent


def _star(cx: float, cy: float, r: float, points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    """Vertices of a star pointing up, alternating outer radius r and inner radius inner * r."""
    out = []
    for i in range(2 * points):
        radius = r if i % 2 == 0 else inner * r
        angle = -math.pi / 2 + i * math.pi / points
        out.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return out


def _triangle(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Upward equilateral triangle inscribed in the circle of radius r around (cx, cy)."""
    return [(cx + r * math.cos(a), cy + r * math.sin(a))
            for a in (-math.pi / 2, -math.pi / 2 + 2 * math.pi / 3, -math.pi / 2 + 4 * math.pi / 3)]


def draw_shape(draw: ImageDraw.ImageDraw, event: VisualEvent, t: float, width: int, height: int,
               fill=None) -> None:
    """Draw one event's shape at its position for time t (in its own colour unless `fill` is given)."""
    x, y = event.position(t)
    cx, cy = x * width, y * height
    r = event.size * min(width, height) / 2
    fill = COLOURS[event.colour] if fill is None else fill
    if event.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif event.shape == "square":
        half = r / math.sqrt(2) * 1.15  # a bit larger than inscribed, so it reads as big as the circle
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif event.shape == "triangle":
        draw.polygon(_triangle(cx, cy, 1.2 * r), fill=fill)  # inscribed looks small: enlarge
    elif event.shape == "star":
        draw.polygon(_star(cx, cy, r), fill=fill)
    else:  # unreachable: VisualEvent validates shapes
        raise ValueError(event.shape)


def frame_time(spec: ClipSpec, index: int) -> float:
    """Time in seconds at which frame `index` is shown."""
    return index / spec.fps


def render_frame(spec: ClipSpec, t: float) -> np.ndarray:
    """One (H, W, 3) uint8 RGB frame showing every visual event active at time t."""
    image = Image.new("RGB", (spec.width, spec.height), COLOURS[spec.background])
    draw = ImageDraw.Draw(image)
    for event in spec.visual_events:
        if event.active(t):
            draw_shape(draw, event, t, spec.width, spec.height)
    return np.asarray(image, dtype=np.uint8)


def event_index_map(spec: ClipSpec, t: float) -> np.ndarray:
    """(H, W) uint8 map of which visual event covers each pixel at time t: 0 = background, i + 1 = event i.

    Drawn exactly like `render_frame` (same order, so later events cover earlier ones); training uses it
    to label what is on screen under every video token.
    """
    image = Image.new("L", (spec.width, spec.height), 0)
    draw = ImageDraw.Draw(image)
    for index, event in enumerate(spec.visual_events):
        if event.active(t):
            draw_shape(draw, event, t, spec.width, spec.height, fill=index + 1)
    return np.asarray(image, dtype=np.uint8)


def iter_frames(spec: ClipSpec) -> Iterator[np.ndarray]:
    """Frames one at a time, so long clips can be streamed to an encoder without holding them all."""
    for index in range(spec.num_frames):
        yield render_frame(spec, frame_time(spec, index))


def render_frames(spec: ClipSpec) -> np.ndarray:
    """All frames as a (T, H, W, 3) uint8 array."""
    return np.stack(list(iter_frames(spec)))
