"""Tests for acckv_cli.synth: specs, determinism, event timing, timbres, mp4 encoding, sample files."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the package may not be installed in the test environment
    sys.path.insert(0, str(ROOT))

from acckv_cli.media.ffmpeg import ffmpeg_executable  # noqa: E402
from acckv_cli.synth import (  # noqa: E402
    COLOURS, INSTRUMENTS, MODEL_RATE, ClipSpec, SoundEvent, VisualEvent, note_to_hz, render_audio, render_clip,
    render_frame, write_mp4,
)

RATE = MODEL_RATE


def solo(instrument: str, pitch: float | str | None = 440.0, start: float = 0.0, end: float = 1.0,
         duration: float = 1.0, seed: int = 0) -> np.ndarray:
    """Audio of one instrument event alone, as float64."""
    spec = ClipSpec(duration_s=duration, seed=seed, sound_events=[SoundEvent(instrument, start, end, pitch=pitch)])
    return render_audio(spec, RATE).astype(np.float64)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


def harmonic_levels(x: np.ndarray, f0: float, count: int = 8) -> np.ndarray:
    """Peak magnitude near each harmonic k*f0 (k = 1..count), relative to the fundamental."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1.0 / RATE)
    levels = np.array([spectrum[np.abs(freqs - k * f0) < 20].max() for k in range(1, count + 1)])
    return levels / levels[0]


def spectral_centroid(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float((spectrum * np.fft.rfftfreq(x.size, 1.0 / RATE)).sum() / spectrum.sum())


def two_scene_spec(seed: int = 0) -> ClipSpec:
    """Drum + blue square on [0.5, 1.5), flute + red moving circle on [2.0, 3.0), in a 3.5 s clip."""
    return ClipSpec(
        duration_s=3.5, width=160, height=120, fps=10, background="gray", seed=seed,
        visual_events=[
            VisualEvent("square", "blue", 0.5, 1.5, x0=0.5, y0=0.5, size=0.3),
            VisualEvent("circle", "red", 2.0, 3.0, x0=0.2, y0=0.5, x1=0.8, y1=0.5, size=0.3),
        ],
        sound_events=[SoundEvent("drum", 0.5, 1.5), SoundEvent("flute", 2.0, 3.0, pitch="A5")],
    )


# ---------------------------------------------------------------- specs

def test_spec_json_roundtrip() -> None:
    spec = two_scene_spec(seed=7)
    data = json.loads(spec.to_json())
    assert data["version"] == 1
    assert ClipSpec.from_dict(data) == spec
    assert ClipSpec.from_json(spec.to_json()) == spec


def test_note_names() -> None:
    assert note_to_hz("A4") == pytest.approx(440.0)
    assert note_to_hz("C4") == pytest.approx(261.626, abs=1e-3)
    assert note_to_hz("C#5") == pytest.approx(note_to_hz("Db5"))
    assert SoundEvent("violin", 0, 1, pitch="A3").frequency_hz == pytest.approx(220.0)
    assert SoundEvent("violin", 0, 1).frequency_hz == pytest.approx(440.0)  # default pitch for violin


@pytest.mark.parametrize("make", [
    lambda: VisualEvent("hexagon", "red", 0, 1),
    lambda: VisualEvent("circle", "teal", 0, 1),
    lambda: SoundEvent("kazoo", 0, 1),
    lambda: SoundEvent("flute", 1.0, 1.0),
    lambda: SoundEvent("flute", 0, 1, pitch="H4"),
    lambda: ClipSpec(duration_s=1.0, sound_events=[SoundEvent("flute", 0.5, 1.5)]),
    lambda: ClipSpec(duration_s=1.0, width=161),
    lambda: ClipSpec(duration_s=1.0, background="red", visual_events=[VisualEvent("star", "red", 0, 1)]),
])
def test_invalid_specs_are_rejected(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_ground_truth_queries() -> None:
    spec = two_scene_spec()
    assert spec.instruments_at(1.0) == ["drum"]
    assert spec.instruments_at(1.8) == []
    assert spec.shapes_at(2.5) == [("red", "circle")]
    assert spec.visual_events[1].position(2.5) == pytest.approx((0.5, 0.5))


# ---------------------------------------------------------------- determinism

def test_render_is_deterministic() -> None:
    frames_a, audio_a, rate_a = render_clip(two_scene_spec(seed=3))
    frames_b, audio_b, rate_b = render_clip(two_scene_spec(seed=3))
    assert frames_a.dtype == np.uint8 and frames_a.shape == (35, 120, 160, 3)
    assert audio_a.dtype == np.float32 and audio_a.shape == (int(3.5 * RATE),) and rate_a == rate_b == RATE
    assert np.array_equal(frames_a, frames_b)
    assert np.array_equal(audio_a, audio_b)
    # The seed drives only the noise components (breath, drum snap): audio changes, frames do not.
    frames_c, audio_c, _ = render_clip(two_scene_spec(seed=4))
    assert np.array_equal(frames_a, frames_c)
    assert not np.array_equal(audio_a, audio_c)


def test_mix_is_normalised_without_clipping() -> None:
    loud = ClipSpec(duration_s=1.0, sound_events=[SoundEvent(i, 0, 1) for i in INSTRUMENTS])
    for rate in (RATE, 44_100):
        audio = render_audio(loud, rate)
        assert audio.shape == (rate,)
        assert 0.85 < np.max(np.abs(audio)) <= 0.9 + 1e-6
    assert not render_audio(ClipSpec(duration_s=1.0)).any()  # no events: exact silence


# ---------------------------------------------------------------- event timing

@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_sound_stays_inside_its_event(instrument: str) -> None:
    audio = solo(instrument, pitch=None, start=0.5, end=1.5, duration=2.0)
    before, inside, after = audio[: int(0.5 * RATE)], audio[int(0.5 * RATE): int(1.5 * RATE)], audio[int(1.5 * RATE):]
    assert not before.any() and not after.any()  # exactly silent outside [start, end)
    # Audible throughout: every 0.25 s window has energy (drum/guitar/bell are re-struck, not one-shot).
    windows = inside.reshape(4, -1)
    assert min(rms(w) for w in windows) > 0.01, instrument


def test_shape_colours_follow_visual_events() -> None:
    spec = two_scene_spec()
    frames, _, _ = render_clip(spec)

    def count(frame: np.ndarray, colour: str) -> int:
        return int(np.all(frame == np.array(COLOURS[colour], np.uint8), axis=-1).sum())

    for index, frame in enumerate(frames):
        t = index / spec.fps
        assert (count(frame, "blue") > 200) == (0.5 <= t < 1.5), t
        assert (count(frame, "red") > 200) == (2.0 <= t < 3.0), t
        assert count(frame, "blue") + count(frame, "red") + count(frame, "gray") == frame.shape[0] * frame.shape[1]


def test_shape_moves_linearly() -> None:
    spec = two_scene_spec()

    def red_centre_x(t: float) -> float:
        mask = np.all(render_frame(spec, t) == np.array(COLOURS["red"], np.uint8), axis=-1)
        return float(np.nonzero(mask)[1].mean()) / spec.width

    assert red_centre_x(2.0) == pytest.approx(0.2, abs=0.01)
    assert red_centre_x(2.5) == pytest.approx(0.5, abs=0.01)
    assert red_centre_x(2.9) == pytest.approx(0.74, abs=0.01)


# ---------------------------------------------------------------- timbres

def test_wind_and_string_timbres_differ() -> None:
    f0 = 440.0
    flute, clarinet, violin = (solo(name, f0) for name in ("flute", "clarinet", "violin"))
    flute_h, clarinet_h, violin_h = (harmonic_levels(x, f0) for x in (flute, clarinet, violin))
    assert flute_h[1:].max() < 0.2  # flute: nearly a sine
    assert clarinet_h[[2, 4, 6]].min() > 0.1 and clarinet_h[[1, 3, 5]].max() < 0.03  # clarinet: odd only
    # Violin: even harmonics present too (vibrato smears the peaks, hence the modest threshold).
    assert violin_h[[1, 3, 5]].min() > 0.05 and violin_h[1] > 10 * clarinet_h[1]
    assert spectral_centroid(flute) + 300 < spectral_centroid(clarinet) < spectral_centroid(violin) - 300


def test_guitar_decays_within_a_pluck_but_violin_sustains() -> None:
    def decay_ratio(x: np.ndarray) -> float:
        return rms(x[int(0.02 * RATE): int(0.1 * RATE)]) / rms(x[int(0.35 * RATE): int(0.45 * RATE)])

    assert decay_ratio(solo("guitar", 220.0)) > 2.5
    assert decay_ratio(solo("violin", 220.0)) < 1.5


def test_drum_beats_regularly() -> None:
    audio = solo("drum", start=0.0, end=2.0, duration=2.0)
    energy = (audio.reshape(-1, int(0.01 * RATE)) ** 2).sum(axis=1) + 1e-12  # 10 ms frames
    onsets = np.nonzero(energy[1:] > 4 * energy[:-1])[0] + 1  # sudden jumps in energy = hits
    assert list(onsets) == list(range(25, 200, 25))  # a hit every 0.25 s (the first one at frame 0)


def test_bell_is_inharmonic() -> None:
    audio = solo("bell", 500.0)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, 1.0 / RATE)
    inner = spectrum[1:-1]
    is_peak = (inner > spectrum[:-2]) & (inner >= spectrum[2:]) & (inner > 0.1 * spectrum.max())
    partials = freqs[1:-1][is_peak]
    ratios = partials[1:] / partials[0]
    # Harmonic instruments have partials at integer multiples of the lowest; most of a bell's are not.
    assert len(partials) >= 5
    assert np.mean(np.abs(ratios - np.round(ratios)) > 0.1) >= 0.5, ratios


# ---------------------------------------------------------------- mp4

def test_write_mp4_decodes_with_expected_streams(tmp_path: Path) -> None:
    spec = two_scene_spec()
    path = write_mp4(spec, tmp_path / "clip.mp4")
    ffmpeg = ffmpeg_executable()
    info = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    assert re.search(r"Video: h264.*yuv420p", info) and "Audio: aac" in info, info

    video = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                           capture_output=True, check=True).stdout
    frames = np.frombuffer(video, np.uint8).reshape(-1, spec.height, spec.width, 3)
    assert frames.shape[0] == spec.num_frames
    centre = frames[10, spec.height // 2, spec.width // 2].astype(int)  # t = 1.0 s: blue square in the middle
    assert np.abs(centre - COLOURS["blue"]).max() < 20

    audio = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1",
                            "-ar", str(RATE), "-"], capture_output=True, check=True).stdout
    samples = np.frombuffer(audio, "<i2").astype(np.float64) / 32768.0
    assert samples.size / RATE == pytest.approx(spec.duration_s, abs=0.05)
    assert rms(samples[int(2.1 * RATE): int(2.9 * RATE)]) > 20 * rms(samples[int(1.6 * RATE): int(1.9 * RATE)]) + 1e-6


# ---------------------------------------------------------------- committed samples

def _load_make_samples():
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "samples" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_samples_match_their_specs() -> None:
    module = _load_make_samples()
    for name, spec in module.CLIPS.items():
        mp4, spec_json = ROOT / "samples" / f"{name}.mp4", ROOT / "samples" / f"{name}.json"
        assert mp4.is_file() and mp4.stat().st_size < 300_000, mp4
        assert ClipSpec.from_json(spec_json.read_text()) == spec, f"{spec_json} is stale: rerun make_samples.py"
        assert 4.0 <= spec.duration_s <= 12.0 and spec.sound_events  # SynthAVQA clips last 4–12 s
    assert (ROOT / "samples" / "bell.wav").is_file()
