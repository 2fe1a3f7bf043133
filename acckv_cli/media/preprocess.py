"""The frame-size and frame-sampling rules of Qwen's official video preprocessing (``qwen-omni-utils``).

Qwen2.5-Omni's README prepares inputs with ``qwen_omni_utils.process_mm_info`` before calling the
processor. For a video file it (version 0.0.9, decord backend):

* samples ``smart_nframes`` frames: ``duration * 2`` clamped to ``[4, min(768, n_frames)]``, floored to an
  even count, at ``torch.linspace(0, n_frames - 1, count).round()``;
* resizes them once, with torchvision's antialiased bicubic filter, to :func:`smart_resize`'s size: sides
  rounded to multiples of 28 and pixels per frame within ``[128·28², min(768·28², total / count · 2)]``,
  where ``total = 128000·28²·0.9`` bounds the whole video (the cap bites above 300 frames);
* reads the soundtrack with ``librosa.load(path, sr=16000)``: the mean of the channels, resampled with
  soxr's HQ filter.

The processor then finds the frames already on its grid and leaves them alone. This module holds the
pure rules (frame indices, sizes, the resize filter); :mod:`acckv_cli.media.frames` applies them while decoding.
"""

from __future__ import annotations

import math

import numpy as np

FACTOR = 28  # patch 14 × spatial merge 2: one LLM token per 28×28 pixels of a frame pair
VIDEO_MIN_PIXELS = 128 * FACTOR * FACTOR  # 100,352
VIDEO_MAX_PIXELS = 768 * FACTOR * FACTOR  # 602,112
VIDEO_TOTAL_PIXELS = 128000 * FACTOR * FACTOR * 0.9  # qwen-omni-utils: MODEL_SEQ_LEN · 28² · 0.9
FRAME_FACTOR = 2  # Qwen's vision encoder merges frames in temporal patches of 2: frame counts are even
MAX_RATIO = 200


def _round_by(x: float, factor: int) -> int:
    return round(x / factor) * factor


def smart_resize(height: int, width: int, min_pixels: float, max_pixels: float, factor: int = FACTOR
                 ) -> tuple[int, int]:
    """qwen-omni-utils' ``smart_resize``: sides multiples of ``factor``, area within the pixel range.

    Sides are rounded to the nearest multiple; if the area leaves the range the frame is scaled to it,
    flooring the sides when shrinking and ceiling them when enlarging. Same arithmetic as the original
    (``max_pixels`` may be a float), so the sizes agree exactly.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if max_pixels < min_pixels:
        raise ValueError(f"max_pixels ({max_pixels}) must be >= min_pixels ({min_pixels})")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"aspect ratio must be below {MAX_RATIO}, got {width}x{height}")
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def frame_pixel_cap(n_frames: int, min_pixels: int = VIDEO_MIN_PIXELS, max_pixels: int = VIDEO_MAX_PIXELS,
                    total_pixels: float = VIDEO_TOTAL_PIXELS) -> float:
    """Per-frame pixel cap of a video of ``n_frames`` frames: ``max_pixels``, or less for long videos.

    ``max(min(max_pixels, total_pixels / n_frames · 2), int(min_pixels · 1.05))``, as in ``fetch_video``.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    return max(min(max_pixels, total_pixels / n_frames * FRAME_FACTOR), int(min_pixels * 1.05))


def video_frame_size(height: int, width: int, n_frames: int, min_pixels: int = VIDEO_MIN_PIXELS,
                     max_pixels: int = VIDEO_MAX_PIXELS, total_pixels: float = VIDEO_TOTAL_PIXELS
                     ) -> tuple[int, int]:
    """The (height, width) Qwen's pipeline resizes the ``n_frames`` sampled frames of a video to."""
    cap = frame_pixel_cap(n_frames, min_pixels, max_pixels, total_pixels)
    return smart_resize(height, width, min_pixels, cap)


def video_pixel_range(size: dict | None, factor: int = FACTOR) -> tuple[int, int]:
    """(min, max) pixels per video frame for a video processor whose ``size`` is given.

    The published Qwen2.5-Omni checkpoints ship a single preprocessor config whose pixel range,
    3,136–12,845,056, is Qwen2-VL's *image* range; the video processor inherits it, but Qwen's own pipeline
    ignores it for videos and uses 128·28²–768·28² (qwen-omni-utils). So a range whose upper end lies
    beyond 768·28² (or no range at all) is read as "no video range of its own": Qwen's official video
    range applies. A range within 768·28² is a deliberate video setting and is kept as declared: the
    built-in demo model, trained at 4·28²–36·28², and the tiny test models. ``factor`` is the model's
    pixels per token side: 28 for Qwen2.5-Omni, 32 for Qwen3-Omni (patch 16), whose official range is
    128·32²–768·32² (its processor's default, and qwen-omni-utils with ``image_patch_size=16``).
    """
    size = size or {}
    low, high = size.get("shortest_edge"), size.get("longest_edge")
    official_min, official_max = 128 * factor * factor, 768 * factor * factor
    if not high or high > official_max:
        return official_min, official_max
    return int(low or min(official_min, high)), int(high)


def uses_official_sizing(pixel_range: tuple[int, int]) -> bool:
    """True when a model's range is Qwen's official one: frames are then sized as Qwen's pipeline does.

    Models with a range of their own (the demo) keep the sizing they were trained with: frames shrunk
    under the cap while decoding, then rounded to the 28-pixel grid by the processor.
    """
    return tuple(pixel_range) == (VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS)


# ------------------------------------------------------------------------------------------- sampling


def check_sampling_args(fps: float, min_frames: int, max_frames: int | None) -> None:
    if not fps >= 1:  # also rejects NaN
        raise ValueError(
            f"--fps must be >= 1 (got {fps}): lower rates desynchronise Qwen2.5-Omni's interleaved "
            "audio/video chunks"
        )
    if min_frames < 1 or (max_frames is not None and (max_frames < FRAME_FACTOR or min_frames > max_frames)):
        raise ValueError(
            f"need 1 <= min_frames <= max_frames and max_frames >= {FRAME_FACTOR} "
            f"(got min_frames={min_frames}, max_frames={max_frames})"
        )


def sample_frame_indices(
    n_frames: int, native_fps: float, fps: float = 2.0, min_frames: int = 4, max_frames: int | None = 768
) -> tuple[np.ndarray, float]:
    """Frame indices to decode and the effective sampling rate, following Qwen's ``smart_nframes``.

    The count is ``duration * fps`` clamped to ``[min_frames, min(max_frames, n_frames)]`` and floored to
    an even number (Qwen's temporal patch is 2 frames); a one-frame video yields its frame twice.
    ``max_frames=None`` lifts Qwen's 768-frame cap, so a long clip keeps the requested rate (the model's
    position range is then the limit: ``acckv_cli.model.positions``).
    Indices are spread uniformly over the whole video. The returned rate, ``count / duration``, is what
    the processor must be told so that video timestamps line up with the audio.
    """
    check_sampling_args(fps, min_frames, max_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not native_fps > 0:
        raise ValueError(f"native_fps must be > 0, got {native_fps}")
    wanted = n_frames / native_fps * fps
    count = min(max(wanted, min_frames), max_frames if max_frames is not None else n_frames, n_frames)
    count = max(FRAME_FACTOR, int(count // FRAME_FACTOR) * FRAME_FACTOR)
    indices = _linspace_indices(n_frames, count)
    sample_fps = count * native_fps / n_frames
    return indices, float(sample_fps)


def _linspace_indices(n_frames: int, count: int) -> np.ndarray:
    """``torch.linspace(0, n_frames - 1, count).round()`` in float32, as qwen-omni-utils computes it.

    float64 (``np.linspace``) rounds differently at some exact halves once videos have more than about
    13,000 frames: one frame in 768 would then differ from Qwen's.
    """
    import torch

    return torch.linspace(0, n_frames - 1, count, dtype=torch.float32).round().long().numpy().astype(np.int64)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (T, H, W, 3) uint8 frames as qwen-omni-utils does: torchvision's antialiased bicubic filter.

    Same call as ``fetch_video`` (``torchvision.transforms.functional.resize`` on a uint8 tensor, which
    rounds and clamps back to uint8), so the same decoded frames give the same pixels.
    """
    if frames.shape[1:3] == (height, width):
        return frames
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tv_functional

    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    out = tv_functional.resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())
