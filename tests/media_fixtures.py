"""Small synthetic media files for the media-layer tests, generated with the project's ffmpeg.

Everything is made from lavfi sources (``testsrc2`` moving pattern, 440 Hz ``sine``), so no network and
no binary fixtures in the repository. Clips are tiny (160x120, 2-3 s) to keep the whole set under a few
seconds to build on two cores.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from acckv_cli.media.ffmpeg import ffmpeg_executable

SINE_HZ = 440.0
W, H = 160, 120


def _video_src(duration: float, size: str = f"{W}x{H}", rate: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={duration}"]


def _sine_src(duration: float, rate: int = 44100) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={SINE_HZ:g}:sample_rate={rate}:duration={duration}"]


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
VPX_FAST = ["-deadline", "realtime", "-cpu-used", "8"]

# name -> ffmpeg arguments (inputs and codecs; the output path is appended).
RECIPES: dict[str, list[str]] = {
    # Audio + video in the common containers.
    "av.mp4": [*_video_src(3), *_sine_src(3), *X264, "-c:a", "aac", "-shortest"],
    "av.mkv": [*_video_src(2), *_sine_src(2), *X264, "-c:a", "aac", "-shortest"],
    "av_vp8.webm": [*_video_src(2), *_sine_src(2), "-c:v", "libvpx", *VPX_FAST, "-c:a", "libvorbis"],
    "av_vp9.webm": [*_video_src(2), *_sine_src(2), "-c:v", "libvpx-vp9", *VPX_FAST, "-c:a", "libopus"],
    "av.mov": [*_video_src(2), *_sine_src(2), *X264, "-c:a", "aac", "-shortest"],
    "av.avi": [*_video_src(2), *_sine_src(2), "-c:v", "mpeg4", "-c:a", "libmp3lame"],
    # Edge cases of well-formed files.
    "video_only.mp4": [*_video_src(2), *X264],
    "silent_audio.mp4": [
        *_video_src(2), "-f", "lavfi", "-i", "anullsrc=channel_layout=mono:sample_rate=44100",
        *X264, "-c:a", "aac", "-t", "2",
    ],
    "one_frame.mp4": [*_video_src(1), "-frames:v", "1", *X264],
    "big_8k.mp4": [*_video_src(1, size="7680x4320", rate=2), *X264],
    "uhd_2s.mp4": [*_video_src(2, size="3840x2160", rate=5), *_sine_src(2), *X264, "-c:a", "aac", "-shortest"],
    # Audio-only files.
    "stereo.wav": [*_sine_src(2), "-ac", "2", "-c:a", "pcm_s16le"],
    "tone.flac": [*_sine_src(2), "-c:a", "flac"],
    "tone.mp3": [*_sine_src(2), "-c:a", "libmp3lame"],
    "tone.ogg": [*_sine_src(2), "-c:a", "libvorbis"],
    "tone.m4a": [*_sine_src(2), "-c:a", "aac"],
    "tone.opus": [*_sine_src(2), "-c:a", "libopus"],
    # Broken or empty containers.
    "faststart.mp4": [*_video_src(3), *_sine_src(3), *X264, "-c:a", "aac", "-shortest", "-movflags", "+faststart"],
    "no_streams.mp4": [*_video_src(1), "-frames:v", "0", *X264],  # muxer writes a header, no track
    "zero_frames.avi": [*_video_src(1), "-frames:v", "0", "-c:v", "mjpeg"],  # a video track with no frame
    "header_only.wav": [*_sine_src(1, rate=16000), "-t", "0"],
}

# Derived files: name -> (source name, how it is made from it).
COVER_ART = {"cover_art.mp3": "tone.mp3", "cover_art.m4a": "tone.m4a"}

# Names that break naive shell strings or ffmpeg argument parsing; each is a copy of av.mp4.
TRICKY_NAMES = [
    "with space.mp4",
    "vidéo 日本語 🎬.mp4",
    "-leading-dash.mp4",
    "a;$(touch PWNED)&|`touch PWNED2`'\"b.mp4",
    "http:not-a-url.mp4",
    "100% done.mp4",
]


def run_ffmpeg(*args: str) -> None:
    """Run the project's ffmpeg quietly; fail loudly with its stderr if it fails."""
    cmd = [ffmpeg_executable(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {cmd}\n{proc.stderr}")


def _make(directory: Path, name: str) -> Path:
    out = directory / name
    run_ffmpeg(*RECIPES[name], str(out))
    return out


def _add_cover_art(directory: Path, name: str, source: Path, cover: Path) -> Path:
    out = directory / name
    run_ffmpeg("-i", str(source), "-i", str(cover), "-map", "0", "-map", "1", "-c", "copy",
               "-disposition:v:0", "attached_pic", str(out))
    return out


def _truncate_half(source: Path, out: Path) -> Path:
    data = source.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def build_media_set(directory: Path) -> dict[str, Path]:
    """Generate every fixture file in ``directory``; returns name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=4) as pool:  # ffmpeg runs are subprocesses: threads suffice
        made = dict(zip(RECIPES, pool.map(lambda n: _make(directory, n), RECIPES)))
    cover = directory / "cover.png"
    run_ffmpeg("-f", "lavfi", "-i", "color=c=red:size=64x64", "-frames:v", "1", str(cover))
    for name, source in COVER_ART.items():
        made[name] = _add_cover_art(directory, name, made[source], cover)
    # av.mp4 keeps its index (moov) at the end: half of it has no index at all.
    made["truncated.mp4"] = _truncate_half(made["av.mp4"], directory / "truncated.mp4")
    # faststart puts the index first: half of it has an index pointing at missing data.
    made["truncated_faststart.mp4"] = _truncate_half(made["faststart.mp4"], directory / "truncated_faststart.mp4")
    made["zero_bytes.mp4"] = directory / "zero_bytes.mp4"
    made["zero_bytes.mp4"].write_bytes(b"")
    made["text.mp4"] = directory / "text.mp4"
    made["text.mp4"].write_text("this is not a video\n" * 20)
    made["subtitles_only.mkv"] = _subtitles_only(directory)
    made["directory.mp4"] = directory / "directory.mp4"
    made["directory.mp4"].mkdir(exist_ok=True)
    made["broken_link.mp4"] = directory / "broken_link.mp4"
    made["broken_link.mp4"].symlink_to(directory / "does-not-exist.mp4")
    for name in TRICKY_NAMES:
        made[name] = directory / name
        shutil.copyfile(made["av.mp4"], made[name])
    return made


def _subtitles_only(directory: Path) -> Path:
    srt = directory / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    out = directory / "subtitles_only.mkv"
    run_ffmpeg("-i", str(srt), "-c:s", "srt", str(out))
    return out


def dominant_hz(wav: np.ndarray, rate: int) -> float:
    """Frequency of the strongest spectral peak of a waveform."""
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1.0 / rate)[int(np.argmax(spectrum))])
