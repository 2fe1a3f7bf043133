"""Qwen's official preprocessing run side by side with acckv's, for the tests and the comparison script.

The official pipeline is the call in Qwen2.5-Omni's README: ``qwen_omni_utils.process_mm_info`` decodes the
file (decord frames resized to ``smart_resize``'s size with an antialiased bicubic filter, audio from
``librosa.load(path, sr=16000)``), then ``Qwen2_5OmniProcessor`` is called without ``fps`` (so it assumes
2.0). On transformers 5.24 the processor flag ``use_audio_in_video`` is spelt
``load_audio_from_video=True, audio_from_video_indices=[0]``.

Needs the ``test`` extra (``qwen-omni-utils``, which pulls PyAV). librosa reads a video's soundtrack
through audioread, which runs ``ffmpeg`` from PATH: :func:`ffmpeg_on_path` puts the project's ffmpeg there
when there is none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from acckv_cli.media.ffmpeg import ffmpeg_executable

# The published Qwen2.5-Omni checkpoints ship one preprocessor config for images and videos; the video
# processor reads Qwen2-VL's image pixel range from it.
PUBLISHED_MIN_PIXELS = 4 * 28 * 28  # 3,136
PUBLISHED_MAX_PIXELS = 16384 * 28 * 28  # 12,845,056
PUBLISHED_AUDIO_SECONDS = 300  # WhisperFeatureExtractor chunk_length of the published checkpoints


def published_like_processor(tokenizer=None, feature_chunk_seconds: int = PUBLISHED_AUDIO_SECONDS):
    """The stock processor with the published checkpoints' pixel and audio settings (tiny tokenizer)."""
    from acckv_cli.testing.tiny import build_processor

    return build_processor(tokenizer, feature_chunk_seconds, PUBLISHED_MIN_PIXELS, PUBLISHED_MAX_PIXELS)


@contextlib.contextmanager
def ffmpeg_on_path():
    """Make ``ffmpeg`` resolvable on PATH (audioread needs it) for the duration of the block."""
    if shutil.which("ffmpeg"):
        yield
        return
    old = os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(ffmpeg_executable(), os.path.join(tmp, "ffmpeg"))
        os.environ["PATH"] = tmp + os.pathsep + old
        try:
            yield
        finally:
            os.environ["PATH"] = old


@dataclass
class OfficialResult:
    """What Qwen's pipeline gives the model for one clip and question."""

    inputs: dict  # processor output
    frames: np.ndarray | None  # (T, H, W, 3) uint8, as handed to the processor
    frame_indices: list[int] | None
    sample_fps: float | None
    audio: np.ndarray | None  # 16 kHz mono float32


def official_conversation(path: str, question: str, video: bool = True) -> list[dict]:
    kind = "video" if video else "audio"
    return [{"role": "user", "content": [{"type": kind, kind: str(path)}, {"type": "text", "text": question}]}]


def run_official(processor, path: str, question: str, video: bool = True, run_processor: bool = True
                 ) -> OfficialResult:
    """Qwen's README call on ``path``: ``process_mm_info`` then the processor with no ``fps``."""
    os.environ.setdefault("FORCE_QWENVL_VIDEO_READER", "decord")  # read when qwen_omni_utils is imported
    from qwen_omni_utils import process_mm_info
    from qwen_omni_utils.v2_5.vision_process import get_video_reader_backend

    if get_video_reader_backend() != "decord":  # torchcodec, when installed, would decode differently
        raise RuntimeError("set FORCE_QWENVL_VIDEO_READER=decord before qwen_omni_utils is imported")

    conversation = official_conversation(path, question, video)
    with ffmpeg_on_path():
        audios, _, videos, kwargs = process_mm_info(conversation, use_audio_in_video=video,
                                                     return_video_kwargs=True, return_video_metadata=True)
    frames = indices = sample_fps = None
    if videos:
        video_tensor, metadata = videos[0]
        # fetch_video returns float tensors holding the uint8 values of its resize (T, C, H, W)
        values = video_tensor.numpy()
        assert np.array_equal(values, np.round(values)), "expected integer-valued frames"
        frames = np.ascontiguousarray(values.transpose(0, 2, 3, 1).astype(np.uint8))
        indices = [int(i) for i in metadata["frames_indices"]]
        sample_fps = len(indices) / metadata["total_num_frames"] * metadata["fps"]
        videos = [video_tensor]
    audio = np.asarray(audios[0], dtype=np.float32) if audios else None
    inputs = None
    if run_processor:
        text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        call: dict = {"text": text, "return_tensors": "pt"}
        if videos:
            call["videos"] = videos
            if audios:
                call.update(audio=audios, load_audio_from_video=True, audio_from_video_indices=[0])
        elif audios:
            call["audio"] = audios
        inputs = processor(**call)
        inputs.pop("mm_token_type_ids", None)
    return OfficialResult(inputs, frames, indices, sample_fps, audio)


def pixels_from_patches(pixel_values, processor) -> np.ndarray:
    """Undo the video processor's normalisation: the patch values in 0–255 levels (float64)."""
    vp = processor.video_processor
    mean = np.repeat(np.asarray(vp.image_mean, dtype=np.float64), vp.temporal_patch_size * vp.patch_size ** 2)
    std = np.repeat(np.asarray(vp.image_std, dtype=np.float64), vp.temporal_patch_size * vp.patch_size ** 2)
    values = pixel_values.double().numpy()
    return (values * std + mean) * 255.0


def audio_agreement(ours: np.ndarray, reference: np.ndarray) -> dict:
    """Length difference, RMS ratio (ours / reference) and correlation over the common length."""
    n = min(len(ours), len(reference))
    a, b = ours[:n].astype(np.float64), reference[:n].astype(np.float64)
    rms_a, rms_b = float(np.sqrt(np.mean(a ** 2))), float(np.sqrt(np.mean(b ** 2)))
    corr = float(np.corrcoef(a, b)[0, 1]) if rms_a > 0 and rms_b > 0 else float("nan")
    return {"samples": (len(ours), len(reference)), "rms_ratio": rms_a / rms_b if rms_b else float("nan"),
            "rms_ratio_db": 20 * np.log10(rms_a / rms_b) if rms_a and rms_b else float("nan"),
            "correlation": corr, "max_abs_diff": float(np.max(np.abs(a - b))) if n else 0.0}
