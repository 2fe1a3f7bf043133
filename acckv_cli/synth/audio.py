"""Numpy-only instrument synthesis and mixing for synthetic clips.

Each instrument is built to be recognisable from a few acoustic cues a listener (or an audio encoder)
would use, rather than to sound realistic:

- flute: almost a pure sine (weak 2nd-4th harmonics), gentle vibrato and breath noise;
- clarinet: odd harmonics only (a cylindrical bore closed at one end), no vibrato;
- violin: sawtooth-like spectrum (all harmonics, 1/k) with delayed vibrato and slow bowed attack;
- guitar: plucked string, harmonics decaying exponentially (higher ones faster), re-plucked regularly;
- drum: a pitch-dropping membrane plus a noise burst, struck on a steady beat;
- bell: inharmonic partials (Risset's bell ratios) with long, partial-dependent decays.

Everything is deterministic: noise comes from a generator seeded by (clip seed, event index), so adding
or editing one event never changes the noise of another.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Callable

import numpy as np

from .events import ClipSpec, SoundEvent

MODEL_RATE = 16_000  # what Qwen2.5-Omni's audio encoder consumes
FILE_RATE = 44_100  # for files meant to be listened to
PEAK = 0.9  # mix peak after normalisation: headroom so AAC encoding does not clip
VOICE_RMS = 0.25  # per-event loudness before gain; only relative levels survive the mix normalisation
END_FADE_S = 0.01  # every event fades out before end_s so its sound stays inside its interval

Voice = Callable[[float, int, int, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------- building blocks

def _times(n: int, rate: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / rate


def _fade(n: int, rate: int, attack_s: float, release_s: float) -> np.ndarray:
    """Linear attack from 0 and linear release to 0 over the last release_s seconds."""
    env = np.ones(n)
    a = min(n, max(1, round(attack_s * rate)))
    r = min(n, max(1, round(release_s * rate)))
    env[:a] *= np.linspace(0.0, 1.0, a, endpoint=False)
    env[n - r:] *= np.linspace(1.0, 0.0, r)
    return env


def _harmonics(f0: float, amps: dict[int, float], n: int, rate: int,
               vibrato_hz: float = 0.0, vibrato_depth: float = 0.0, vibrato_delay_s: float = 0.0) -> np.ndarray:
    """Sum of harmonics k*f0 with amplitudes amps[k], sharing one (optionally vibrato-modulated) phase.

    The phase is integrated from the instantaneous frequency, so vibrato bends every harmonic coherently
    (as in a real instrument) instead of smearing them independently. Harmonics too close to Nyquist are
    dropped to avoid aliasing, which would otherwise differ between 16 kHz and 44.1 kHz renders.
    """
    t = _times(n, rate)
    depth = vibrato_depth * np.clip(t / vibrato_delay_s, 0.0, 1.0) if vibrato_delay_s > 0 else vibrato_depth
    freq = f0 * (1.0 + depth * np.sin(2 * np.pi * vibrato_hz * t))
    phase = 2 * np.pi * np.cumsum(freq) / rate
    out = np.zeros(n)
    for k, amp in amps.items():
        if k * f0 * (1 + vibrato_depth) < 0.45 * rate:
            out += amp * np.sin(k * phase)
    return out


def _band_noise(rng: np.random.Generator, n: int, rate: int, centre_hz: float, width_hz: float) -> np.ndarray:
    """Unit-RMS Gaussian noise with a Gaussian band-pass spectrum (shaped in the FFT domain: numpy only)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    noise = np.fft.irfft(spectrum * np.exp(-0.5 * ((freqs - centre_hz) / width_hz) ** 2), n)
    rms = np.sqrt(np.mean(noise**2))
    return noise / rms if rms > 0 else noise


def _repeat_strikes(strike: Callable[[int], np.ndarray], n: int, rate: int, interval_s: float,
                    accents: tuple[float, ...] = (1.0,), damp: bool = False) -> np.ndarray:
    """Overlap-add strike(length) every interval_s seconds; with damp, each strike is cut by the next."""
    out = np.zeros(n)
    step = max(1, round(interval_s * rate))
    for i, onset in enumerate(range(0, n, step)):
        length = min(n - onset, step) if damp else n - onset
        note = strike(length) * accents[i % len(accents)]
        if damp:  # a re-plucked string is silenced by the finger: short fade rather than a click
            note *= _fade(length, rate, 0.0, min(0.005, length / rate))
        out[onset:onset + length] += note
    return out


# ---------------------------------------------------------------- instruments

def flute(f0: float, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Near-sine tone with light vibrato and breath noise that follows the note's envelope."""
    tone = _harmonics(f0, {1: 1.0, 2: 0.12, 3: 0.05, 4: 0.02}, n, rate, vibrato_hz=5.0, vibrato_depth=0.004)
    breath = 0.04 * _band_noise(rng, n, rate, centre_hz=min(2.5 * f0, 0.4 * rate), width_hz=0.8 * f0)
    return (tone + breath) * _fade(n, rate, attack_s=0.08, release_s=0.08)


def clarinet(f0: float, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Odd harmonics (1/k) with only traces of the even ones; steady pitch, quick reedy attack."""
    amps = {k: (1.0 / k if k % 2 else 0.02 / k) for k in range(1, 16)}
    return _harmonics(f0, amps, n, rate) * _fade(n, rate, attack_s=0.04, release_s=0.05)


def violin(f0: float, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Sawtooth-like spectrum (all harmonics, 1/k) with vibrato that builds up, slow bowed attack."""
    amps = {k: 1.0 / k for k in range(1, 31)}
    tone = _harmonics(f0, amps, n, rate, vibrato_hz=5.5, vibrato_depth=0.008, vibrato_delay_s=0.3)
    bow = 0.02 * _band_noise(rng, n, rate, centre_hz=min(3000.0, 0.4 * rate), width_hz=1000.0)
    return (tone + bow) * _fade(n, rate, attack_s=0.12, release_s=0.08)


GUITAR_PLUCK_INTERVAL_S = 0.5


def guitar(f0: float, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Plucked string re-plucked every 0.5 s: harmonics excited by a pluck near the bridge, decaying
    exponentially with higher harmonics dying faster (the string loses treble first), plus a click."""
    pluck_pos = 0.18  # fraction of string length; zeroes harmonics near multiples of 1/pluck_pos
    amps = {k: abs(np.sin(np.pi * k * pluck_pos)) / k**1.2 for k in range(1, 21)}

    def pluck(length: int) -> np.ndarray:
        t = _times(length, rate)
        out = np.zeros(length)
        for k, amp in amps.items():
            if k * f0 < 0.45 * rate:
                out += amp * np.sin(2 * np.pi * k * f0 * t) * np.exp(-t * (3.0 + 2.5 * (k - 1)))
        click = 0.3 * rng.standard_normal(length) * np.exp(-t / 0.003)
        return (out + click) * _fade(length, rate, attack_s=0.001, release_s=0.0)

    return _repeat_strikes(pluck, n, rate, GUITAR_PLUCK_INTERVAL_S, damp=True)


DRUM_BEAT_INTERVAL_S = 0.25


def drum(f0: float, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A tom-like membrane (pitch drops after the hit; first two circular-membrane modes) plus a short
    noise burst, struck every 0.25 s with an accent on each first beat of four."""

    def hit(length: int) -> np.ndarray:
        t = _times(length, rate)
        sweep = 1.0 + 0.8 * np.exp(-t / 0.03)  # the skin is tighter right after the hit
        phase = 2 * np.pi * np.cumsum(f0 * sweep) / rate
        body = np.sin(phase) * np.exp(-t / 0.15) + 0.5 * np.sin(1.59 * phase) * np.exp(-t / 0.08)
        snap = 0.6 * _band_noise(rng, length, rate, centre_hz=min(1500.0, 0.35 * rate), width_hz=800.0)
        return (body + snap * np.exp(-t / 0.02)) * _fade(length, rate, attack_s=0.001, release_s=0.0)

    return _repeat_strikes(hit, n, rate, DRUM_BEAT_INTERVAL_S, accents=(1.0, 0.6, 0.75, 0.6))


BELL_STRIKE_INTERVAL_S = 2.0
# Risset's bell: (frequency ratio, frequency offset Hz, amplitude, decay as a fraction of BELL_DECAY_S).
# The offset pairs beat against each other, the shimmer typical of bells.
_BELL_PARTIALS = (
    (0.56, 0.0, 1.0, 1.0), (0.56, 1.0, 0.67, 0.9), (0.92, 0.0, 1.0, 0.65), (0.92, 1.7, 1.8, 0.55),
    (1.19, 0.0, 2.67, 0.325), (1.7, 0.0, 1.67, 0.35), (2.0, 0.0, 1.46, 0.25), (2.74, 0.0, 1.33, 0.2),
    (3.0, 0.0, 1.33, 0.15), (3.76, 0.0, 1.0, 0.1), (4.07, 0.0, 1.33, 0.075),
)
BELL_DECAY_S = 5.0


def bell(f0: float, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Inharmonic partials with long decays (lower partials ring longest), re-struck every 2 s."""

    def strike(length: int) -> np.ndarray:
        t = _times(length, rate)
        out = np.zeros(length)
        for ratio, offset, amp, decay in _BELL_PARTIALS:
            freq = ratio * f0 + offset
            if freq < 0.45 * rate:  # -40 dB (e^-4.6) at the end of each partial's decay time
                out += amp * np.sin(2 * np.pi * freq * t) * np.exp(-t * 4.6 / (decay * BELL_DECAY_S))
        return out * _fade(length, rate, attack_s=0.002, release_s=0.0)

    return _repeat_strikes(strike, n, rate, BELL_STRIKE_INTERVAL_S)


VOICES: dict[str, Voice] = {
    "flute": flute, "clarinet": clarinet, "violin": violin, "guitar": guitar, "drum": drum, "bell": bell,
}


# ---------------------------------------------------------------- mixing

def render_voice(event: SoundEvent, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One event's samples (length n), RMS-normalised to VOICE_RMS then scaled by its gain.

    Normalising RMS rather than peak makes equal gains sound roughly equally loud: a drum's or bell's
    short peaks would otherwise make it far quieter than a sustained flute. The final fade keeps the
    sound strictly inside [start_s, end_s), which event-timing ground truth relies on.
    """
    if n <= 0:
        return np.zeros(0)
    voice = VOICES[event.instrument](event.frequency_hz, n, rate, rng)
    rms = np.sqrt(np.mean(voice**2))
    if rms > 0:
        voice = voice * (VOICE_RMS / rms)
    return event.gain * voice * _fade(n, rate, attack_s=0.0, release_s=min(END_FADE_S, n / rate))


def render_audio(spec: ClipSpec, rate: int = MODEL_RATE) -> np.ndarray:
    """Mono float32 mix of all sound events at `rate`, peak-normalised to PEAK (silence stays zero)."""
    track = np.zeros(spec.num_samples(rate))
    for index, event in enumerate(spec.sound_events):
        start = round(event.start_s * rate)
        stop = min(round(event.end_s * rate), track.size)
        # Per-event generator: its noise depends only on (clip seed, event index), not on other events.
        rng = np.random.default_rng([spec.seed, index])
        track[start:stop] += render_voice(event, stop - start, rate, rng)
    peak = np.max(np.abs(track)) if track.size else 0.0
    if peak > 0:
        track *= PEAK / peak
    return track.astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Write mono audio in [-1, 1] as 16-bit PCM WAV (stdlib only)."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
