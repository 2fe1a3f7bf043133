"""Declarative description of a synthetic audio-video clip.

A `ClipSpec` is the single source of truth for a clip: the renderer turns it into frames and audio, and
the same spec gives the exact answers to questions about the clip (which instrument plays when, what
colour each shape is, where it moves). Specs round-trip through plain JSON dicts so that a benchmark can
store them next to the rendered files and regenerate or re-score them later.

Conventions (shared by `audio.py`, `video.py` and question generators):
- times are seconds from the start of the clip; an event is active on the half-open interval
  [start_s, end_s);
- positions are normalised centre coordinates, (0, 0) the top-left corner and (1, 1) the bottom-right;
- `size` is the shape's diameter as a fraction of min(width, height).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Union

SCHEMA_VERSION = 1

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
INSTRUMENTS: tuple[str, ...] = ("flute", "clarinet", "violin", "guitar", "drum", "bell")

# Saturated, widely separated colours: they stay nameable after yuv420p chroma subsampling and after a
# model's own downscaling, so "what colour is the square?" has one defensible answer.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 225, 20),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "purple": (140, 40, 180),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    # Background-friendly neutral; not meant as an answer colour for shapes, but allowed.
    "gray": (110, 110, 110),
}

# Pitch used when a SoundEvent gives none: a comfortable register for each instrument.
DEFAULT_PITCH: dict[str, str] = {
    "flute": "C5", "clarinet": "G4", "violin": "A4", "guitar": "E3", "drum": "G2", "bell": "C5",
}

Pitch = Union[float, str, None]

_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_SEMITONE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_to_hz(note: str) -> float:
    """Convert a note name such as 'A4', 'C#5' or 'Bb3' to Hz (equal temperament, A4 = 440 Hz)."""
    match = _NOTE_RE.match(note.strip())
    if not match:
        raise ValueError(f"not a note name: {note!r} (expected e.g. 'A4', 'C#5', 'Bb3')")
    letter, accidental, octave = match.groups()
    midi = 12 * (int(octave) + 1) + _SEMITONE[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def _check_interval(start_s: float, end_s: float, what: str) -> None:
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s <= start_s:
        raise ValueError(f"{what}: need 0 <= start_s < end_s, got [{start_s}, {end_s})")


@dataclass(frozen=True)
class VisualEvent:
    """A coloured shape visible on [start_s, end_s), moving linearly from (x0, y0) to (x1, y1)."""

    shape: str
    colour: str
    start_s: float
    end_s: float
    x0: float = 0.5
    y0: float = 0.5
    x1: float | None = None  # None: static at (x0, y0)
    y1: float | None = None
    size: float = 0.25

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose from {SHAPES}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; choose from {tuple(COLOURS)}")
        _check_interval(self.start_s, self.end_s, f"{self.colour} {self.shape}")
        if not 0 < self.size <= 1:
            raise ValueError(f"size must be in (0, 1], got {self.size}")

    def active(self, t: float) -> bool:
        """Whether the shape is on screen at time t."""
        return self.start_s <= t < self.end_s

    def position(self, t: float) -> tuple[float, float]:
        """Normalised centre at time t (clamped to the event's interval)."""
        x1 = self.x0 if self.x1 is None else self.x1
        y1 = self.y0 if self.y1 is None else self.y1
        frac = min(max((t - self.start_s) / (self.end_s - self.start_s), 0.0), 1.0)
        return self.x0 + frac * (x1 - self.x0), self.y0 + frac * (y1 - self.y0)

    def moves(self) -> bool:
        """Whether the shape changes position during the event."""
        return self.position(self.start_s) != self.position(self.end_s)


@dataclass(frozen=True)
class SoundEvent:
    """An instrument sounding on [start_s, end_s) at a pitch (Hz or a note name like 'A4').

    Sustained instruments (flute, clarinet, violin) hold one note; guitar is re-plucked, drum re-struck
    and bell re-rung at a steady rate so that the instrument is audible for the whole interval.
    """

    instrument: str
    start_s: float
    end_s: float
    pitch: Pitch = None  # None: the instrument's DEFAULT_PITCH
    gain: float = 1.0

    def __post_init__(self) -> None:
        if self.instrument not in INSTRUMENTS:
            raise ValueError(f"unknown instrument {self.instrument!r}; choose from {INSTRUMENTS}")
        _check_interval(self.start_s, self.end_s, self.instrument)
        if not 20.0 <= self.frequency_hz <= 5000.0:
            raise ValueError(f"pitch {self.pitch!r} = {self.frequency_hz:.1f} Hz is outside 20-5000 Hz")
        if not 0 <= self.gain <= 1:
            raise ValueError(f"gain must be in [0, 1], got {self.gain}")

    @property
    def frequency_hz(self) -> float:
        """The fundamental frequency in Hz."""
        pitch = DEFAULT_PITCH[self.instrument] if self.pitch is None else self.pitch
        return note_to_hz(pitch) if isinstance(pitch, str) else float(pitch)

    def active(self, t: float) -> bool:
        """Whether the instrument sounds at time t."""
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip deterministically."""

    duration_s: float
    width: int = 320
    height: int = 240
    fps: float = 15.0
    background: str = "gray"
    visual_events: tuple[VisualEvent, ...] = field(default_factory=tuple)
    sound_events: tuple[SoundEvent, ...] = field(default_factory=tuple)
    seed: int = 0

    def __post_init__(self) -> None:
        # Accept lists and ints for convenience but store tuples and floats, so specs stay hashable and
        # immutable and compare equal after a JSON round trip.
        object.__setattr__(self, "duration_s", float(self.duration_s))
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "visual_events", tuple(self.visual_events))
        object.__setattr__(self, "sound_events", tuple(self.sound_events))
        if self.duration_s <= 0 or self.fps <= 0:
            raise ValueError("duration_s and fps must be positive")
        # Even dimensions: yuv420p (what players and video loaders expect) cannot encode odd sizes.
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even and >= 16, got {self.width}x{self.height}")
        if self.background not in COLOURS:
            raise ValueError(f"unknown background {self.background!r}; choose from {tuple(COLOURS)}")
        for event in (*self.visual_events, *self.sound_events):
            if event.end_s > self.duration_s + 1e-9:
                raise ValueError(f"{event} ends after the clip ({self.duration_s} s)")
        for event in self.visual_events:
            if event.colour == self.background:
                raise ValueError(f"{event.colour} {event.shape} would be invisible on a {self.background} background")

    @property
    def num_frames(self) -> int:
        """Number of video frames; frame i is shown at time i / fps."""
        return max(1, round(self.duration_s * self.fps))

    def num_samples(self, rate: int) -> int:
        """Number of audio samples at a given sample rate."""
        return round(self.duration_s * rate)

    def instruments_at(self, t: float) -> list[str]:
        """Instruments sounding at time t (ground truth for 'what plays at t?')."""
        return sorted({e.instrument for e in self.sound_events if e.active(t)})

    def shapes_at(self, t: float) -> list[tuple[str, str]]:
        """(colour, shape) pairs visible at time t."""
        return sorted({(e.colour, e.shape) for e in self.visual_events if e.active(t)})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (with a schema version) that `from_dict` reads back."""
        data = asdict(self)
        data["visual_events"] = [asdict(e) for e in self.visual_events]
        data["sound_events"] = [asdict(e) for e in self.sound_events]
        return {"version": SCHEMA_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipSpec":
        """Inverse of `to_dict`; rejects unknown schema versions rather than guessing."""
        data = dict(data)
        version = data.pop("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported ClipSpec schema version {version} (this code reads {SCHEMA_VERSION})")
        data["visual_events"] = tuple(VisualEvent(**e) for e in data.get("visual_events", ()))
        data["sound_events"] = tuple(SoundEvent(**e) for e in data.get("sound_events", ()))
        return cls(**data)

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "ClipSpec":
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))
