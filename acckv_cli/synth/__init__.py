"""Deterministic renderer of synthetic audio-video clips (coloured shapes + synthesised instruments).

Used for the repository's sample clips and as the core of SynthAVQA, a synthetic audio-video QA
benchmark: a `ClipSpec` both renders the clip and answers questions about it.
"""

from .audio import FILE_RATE, MODEL_RATE, render_audio, write_wav
from .events import COLOURS, INSTRUMENTS, SHAPES, ClipSpec, SoundEvent, VisualEvent, note_to_hz
from .render import render_clip, write_mp4
from .video import render_frame, render_frames

__all__ = [
    "COLOURS", "FILE_RATE", "INSTRUMENTS", "MODEL_RATE", "SHAPES", "ClipSpec", "SoundEvent", "VisualEvent",
    "note_to_hz", "render_audio", "render_clip", "render_frame", "render_frames", "write_mp4", "write_wav",
]
