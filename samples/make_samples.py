"""Regenerate the sample clips in this folder: `python samples/make_samples.py` (from the repo root or anywhere).

Every clip is a SynthAVQA clip (`acckv_cli.synth.avqa`) chosen by content from the `samples` split; each mp4 gets a `<name>.json` next to
it holding its exact ClipSpec (the machine-readable ground truth). README.md describes the same facts.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing the package

from acckv_cli.synth import ClipSpec, SoundEvent, VisualEvent, render_audio, write_mp4, write_wav  # noqa: E402

from acckv_cli.synth.avqa import make_example  # noqa: E402

# Clips of SynthAVQA's `samples` split, chosen by content: the first index (searched once, hard-coded here
# so regeneration is instant) whose aligned segments are the instruments/colours/shapes in the name. They
# come from the demo model's generator (in distribution) but a seed range disjoint from its training data.
SAMPLE_INDEX = {
    "flute_red_circle": 1881,          # flute + red circle
    "clarinet_purple_triangle": 475,   # clarinet + purple triangle
    "drum_then_violin": 25,            # drum + blue square, then violin + purple star
    "guitar_bell_flute": 361,          # guitar + red triangle, bell + yellow square, flute + white star
}
CLIPS: dict[str, ClipSpec] = {name: make_example("samples", index).spec for name, index in SAMPLE_INDEX.items()}

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
