"""Regenerate the sample clips in this folder: `python samples/make_samples.py` (from the repo root or anywhere).

Every clip is synthesised by `acckv_cli.synth` from the specs below; each mp4 gets a `<name>.json` next to
it holding its exact ClipSpec (the machine-readable ground truth). README.md describes the same facts.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing the package

from acckv_cli.synth import ClipSpec, SoundEvent, VisualEvent, render_audio, write_mp4, write_wav  # noqa: E402

CLIPS: dict[str, ClipSpec] = {
    # A red circle glides left to right while a flute plays a rising C-E-G arpeggio.
    "flute_red_circle": ClipSpec(
        duration_s=6.0, width=320, height=240, fps=15, background="gray", seed=1,
        visual_events=(VisualEvent("circle", "red", 0.5, 5.5, x0=0.15, y0=0.5, x1=0.85, y1=0.5, size=0.3),),
        sound_events=(
            SoundEvent("flute", 0.5, 2.0, pitch="C5"),
            SoundEvent("flute", 2.0, 3.5, pitch="E5"),
            SoundEvent("flute", 3.5, 5.5, pitch="G5"),
        ),
    ),
    # Two scenes separated by a second of silence and an empty screen.
    "drum_then_violin": ClipSpec(
        duration_s=8.0, width=320, height=240, fps=15, background="gray", seed=2,
        visual_events=(
            VisualEvent("square", "blue", 0.5, 3.5, x0=0.5, y0=0.5, size=0.35),
            VisualEvent("triangle", "green", 4.5, 7.5, x0=0.3, y0=0.7, x1=0.7, y1=0.35, size=0.35),
        ),
        sound_events=(
            SoundEvent("drum", 0.5, 3.5, pitch="G2"),
            SoundEvent("violin", 4.5, 6.0, pitch="A4"),
            SoundEvent("violin", 6.0, 7.5, pitch="D5"),
        ),
    ),
    # Overlap: the bell starts alone, then a guitar joins; one shape per instrument.
    "bell_and_guitar": ClipSpec(
        duration_s=7.0, width=320, height=240, fps=15, background="gray", seed=3,
        visual_events=(
            VisualEvent("star", "yellow", 0.5, 6.5, x0=0.3, y0=0.35, size=0.35),
            VisualEvent("circle", "orange", 2.0, 6.5, x0=0.55, y0=0.8, x1=0.8, y1=0.3, size=0.25),
        ),
        sound_events=(
            SoundEvent("bell", 0.5, 6.5, pitch="C5"),
            SoundEvent("guitar", 2.0, 3.5, pitch="E3"),
            SoundEvent("guitar", 3.5, 5.0, pitch="A3"),
            SoundEvent("guitar", 5.0, 6.5, pitch="B3"),
        ),
    ),
    # A purple triangle moves right to left on black while a clarinet holds one note.
    "clarinet_purple_triangle": ClipSpec(
        duration_s=5.0, width=320, height=240, fps=15, background="black", seed=4,
        visual_events=(VisualEvent("triangle", "purple", 0.5, 4.5, x0=0.8, y0=0.5, x1=0.2, y1=0.5, size=0.35),),
        sound_events=(SoundEvent("clarinet", 0.5, 4.5, pitch="G4"),),
    ),
}

# Audio only: one bell strike, 16 kHz mono (the rate the model's audio encoder uses).
BELL_WAV = ClipSpec(duration_s=2.0, sound_events=(SoundEvent("bell", 0.0, 2.0, pitch="C5"),), seed=5)
BELL_WAV_RATE = 16_000


def main() -> None:
    """Write every clip (mp4 + spec json) and bell.wav into this folder, then list their sizes."""
    written = []
    for name, spec in CLIPS.items():
        written.append(write_mp4(spec, HERE / f"{name}.mp4"))
        json_path = HERE / f"{name}.json"
        json_path.write_text(spec.to_json(indent=2) + "\n")
        written.append(json_path)
    wav_path = HERE / "bell.wav"
    write_wav(wav_path, render_audio(BELL_WAV, BELL_WAV_RATE), BELL_WAV_RATE)
    written.append(wav_path)
    for path in written:
        print(f"{path.stat().st_size:>8} bytes  {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
