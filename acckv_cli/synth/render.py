"""Render a ClipSpec to arrays, or encode it to an mp4 (h264 yuv420p + AAC) with ffmpeg.

Arrays are deterministic: the same spec always gives bit-identical frames and audio samples. The mp4
bytes are also reproducible with one ffmpeg build (bitexact flags, no metadata, single-threaded x264),
but may differ across ffmpeg versions.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from acckv_cli.media.ffmpeg import ffmpeg_executable
from .audio import FILE_RATE, MODEL_RATE, render_audio, write_wav
from .events import ClipSpec
from .video import iter_frames, render_frames


def render_clip(spec: ClipSpec, audio_rate: int = MODEL_RATE) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (frames (T, H, W, 3) uint8, mono float32 audio, audio_rate) for a spec."""
    return render_frames(spec), render_audio(spec, audio_rate), audio_rate


def _ffmpeg_args(spec: ClipSpec, wav_path: str, out_path: str, crf: int, audio_bitrate: str) -> list[str]:
    fps = Fraction(spec.fps).limit_denominator(1001)  # e.g. 29.97 -> 30000/1001, exact for the muxer
    return [
        ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{spec.width}x{spec.height}",
        "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "pipe:0",
        "-i", wav_path,
        "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
        # Tag the BT.601 matrix swscale uses for RGB->YUV, so decoders do not guess BT.709 and shift colours.
        "-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
        "-color_range", "tv",
        # Single-threaded x264 and bitexact muxing: regenerating samples does not churn their bytes.
        # (x264 writes the colour tags into the bitstream only when told through its own params.)
        "-threads", "1",
        "-x264-params", "threads=1:colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m",
        "-c:a", "aac", "-b:a", audio_bitrate, "-ac", "1",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
        "-movflags", "+faststart", "-f", "mp4", out_path,
    ]


def write_mp4(spec: ClipSpec, path: str | Path, audio_rate: int = FILE_RATE, crf: int = 23,
              audio_bitrate: str = "64k") -> Path:
    """Encode the clip to `path` (h264 yuv420p + mono AAC); returns the path.

    Frames are streamed to ffmpeg's stdin and the audio goes through a temporary WAV, so nothing is ever
    passed through a shell. A clip without sound events still gets a (silent) audio stream, so every
    clip has the same stream layout. The file appears atomically (written aside, then renamed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="acckv-synth-") as tmp:
        wav_path = os.path.join(tmp, "audio.wav")
        write_wav(wav_path, render_audio(spec, audio_rate), audio_rate)
        partial = os.path.join(tmp, "clip.mp4")
        # stderr goes to a file, not a pipe: a chatty ffmpeg can never block on a full pipe while we write.
        with open(os.path.join(tmp, "ffmpeg.log"), "w+b") as log:
            proc = subprocess.Popen(_ffmpeg_args(spec, wav_path, partial, crf, audio_bitrate),
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
            try:
                for frame in iter_frames(spec):
                    proc.stdin.write(frame.tobytes())
            except BrokenPipeError:
                pass  # ffmpeg died early; its exit code and log say why
            except BaseException:
                proc.kill()  # our side failed: do not leave ffmpeg encoding a truncated stream
                proc.wait()
                raise
            finally:
                if not proc.stdin.closed:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass
            code = proc.wait()
            if code != 0:
                log.seek(0)
                raise RuntimeError(f"ffmpeg failed ({code}): {log.read().decode(errors='replace')[-2000:]}")
        _publish(partial, path)
    return path


def _publish(src: str, dst: Path) -> None:
    """Move a finished file into place atomically, even when the temp dir is on another filesystem:
    copy next to dst, then rename (readers never see a half-written mp4)."""
    aside = dst.with_name(f".{dst.name}.partial")
    aside.write_bytes(Path(src).read_bytes())
    os.replace(aside, dst)
