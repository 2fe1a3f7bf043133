"""A file's soundtrack as the model hears it: mono float32 at the model's rate, as ``librosa.load`` gives it.

The first audio stream is decoded by an ffmpeg pipe to float32 PCM (fast, and no librosa/audioread cold
start; the command is an argument list, never a shell string). Mono is the plain mean of the channels, as
in Qwen's pipeline (``librosa.load(..., mono=True)``), taken by ffmpeg at the native rate; resampling then
uses soxr's HQ filter, librosa's default, so the waveform matches Qwen's and not just its loudness.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import subprocess

import numpy as np

from acckv_cli.errors import MediaError
from acckv_cli.media.ffmpeg import ffmpeg_executable, file_url, stderr_reason
from acckv_cli.media.probe import MediaInfo, check_path, probe_container, quoted

logger = logging.getLogger(__name__)


def _mono_args(channels: int | None) -> list[str]:
    """ffmpeg arguments that make mono the way Qwen's pipeline does: the plain mean of the channels.

    qwen-omni-utils reads audio with ``librosa.load(..., mono=True)``, which averages the channels.
    ``-ac 1`` would use ffmpeg's downmix matrix instead (centre + 0.707·front + 0.5·rear, LFE dropped):
    stereo 3 dB louder, 5.1 several times louder and differently mixed. ``pan`` with equal weights is the
    mean; only a channel count that probing could not read falls back to ``-ac 1``.
    """
    if channels == 1:
        return []
    if not channels:
        logger.debug("unknown channel count: ffmpeg's own downmix to mono")
        return ["-ac", "1"]
    weight = repr(1.0 / channels)
    return ["-af", "pan=mono|c0=" + "+".join(f"{weight}*c{i}" for i in range(channels))]


def _ffmpeg_audio_pipe(abs_path: str, shown: str, rate: int, channels: int | None = None) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``rate`` Hz through an ffmpeg pipe."""
    cmd = [
        ffmpeg_executable(), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-i", file_url(abs_path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        *_mono_args(channels), "-ar", str(rate), "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1",
    ]
    logger.debug("audio: %s", cmd)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        if "matches no streams" in stderr:
            raise MediaError(f"{shown} has no audio track")
        raise MediaError(f"cannot decode the audio of {shown} ({stderr_reason(stderr)})")
    # Copy out of the bytes buffer: np.frombuffer views are read-only and callers may normalise in place.
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def decode_audio(info: MediaInfo, rate: int) -> np.ndarray:
    """Mono audio of a probed file at ``rate`` Hz, as ``librosa.load(path, sr=rate)`` gives it.

    The channel mean is taken by ffmpeg at the native rate, then resampled here with soxr's HQ filter
    (librosa's default). When the native rate is unknown, ffmpeg resamples.
    """
    abs_path, shown = check_path(info.path), quoted(info.path)
    native = info.audio_rate
    if native and native != rate and _have_soxr():
        wav = resample(_ffmpeg_audio_pipe(abs_path, shown, native, info.audio_channels), native, rate)
    else:
        wav = _ffmpeg_audio_pipe(abs_path, shown, rate, info.audio_channels)
    if wav.size == 0:
        raise MediaError(f"{shown} contains no audio samples")
    return wav


def decode_soundtrack(info: MediaInfo, rate: int, notices: list[str]) -> np.ndarray | None:
    """Audio of a video file; a broken or empty track degrades to video-only with a notice."""
    try:
        return decode_audio(info, rate)
    except MediaError as exc:
        logger.warning("%s", exc)
        notices.append(f"audio track could not be decoded ({exc}): running video-only")
        return None


def load_audio(path: str | os.PathLike, rate: int = 16000) -> np.ndarray:
    """Mono float32 waveform of the first audio stream of any container, resampled to ``rate`` Hz.

    Mono is the mean of the channels and resampling uses soxr HQ, as in ``librosa.load(path, sr=rate)``.
    """
    if rate < 1:
        raise ValueError(f"audio rate must be >= 1 Hz, got {rate}")
    info = probe_container(path)
    if not info.has_audio:
        raise MediaError(f"{quoted(path)} has no audio track")
    return decode_audio(info, rate)


@functools.lru_cache(maxsize=1)
def _have_soxr() -> bool:
    try:
        import soxr  # noqa: F401  (librosa's resampler, a dependency of librosa)
    except ImportError:
        return False
    return True


def resample(wav: np.ndarray, orig_rate: int, rate: int) -> np.ndarray:
    """Resample a mono waveform like ``librosa.resample`` (soxr HQ); the input as float32 if rates match."""
    wav = np.asarray(wav, dtype=np.float32)
    if orig_rate == rate:
        return wav
    if orig_rate < 1 or rate < 1:
        raise ValueError(f"sample rates must be >= 1 Hz, got {orig_rate} -> {rate}")
    try:
        import soxr  # librosa's own default backend: same output without librosa's multi-second cold start
    except ImportError:
        import librosa

        return librosa.resample(wav, orig_sr=orig_rate, target_sr=rate).astype(np.float32)
    out = soxr.resample(wav, orig_rate, rate, quality="HQ").astype(np.float32)
    return _fix_length(out, math.ceil(len(wav) * rate / orig_rate))  # librosa's fix=True length


def _fix_length(wav: np.ndarray, size: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``size`` samples."""
    if len(wav) >= size:
        return wav[:size]
    return np.pad(wav, (0, size - len(wav)))
