"""Streaming prefill (`--protocol stream`): chunk-by-chunk decode, encode, prefill and compression.

Exactness is checked against the one-shot prompt the processor builds: the same ids and positions, the same
decoder inputs (vision tower per frame-pair chunk, audio tower per feature window), and — with a budget that
keeps everything — the same first-answer logits. With a budget, every layer is checked after every step:
never more than the protected text + the media cap + one step, and the cap after compression. Long clips are
built with few tokens (tiny frames, a 4-s audio window) so everything stays fast.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import build_method, synthetic_media
from media_fixtures import run_ffmpeg
from acckv_cli.media import decode as media_mod
from acckv_cli.cli.app import app
from acckv_cli.methods import METHODS, Budget, get_method
from acckv_cli.methods.streaming import MediaCap, stream_refusal
from acckv_cli.model.load import load_model
from acckv_cli.answer.pipeline import decode_for_model, decode_sizes
from acckv_cli.model.positions import ClipTooLong, check_prompt, longest_clip_s
from acckv_cli.answer.session import ClipSession
from acckv_cli.answer.stream import ChunkEncoder, StreamPrompt, StreamSession, StreamUnsupported, plan_steps

QUESTION = "What instrument plays?"
KINDS = {"av": {}, "video": {"audio": False}, "audio": {"video": False}}
runner = CliRunner()


def make_clip(path, seconds: float, rate: int = 2, size: str = "56x56", audio: bool = True) -> str:
    """A testsrc2 video (and a 440 Hz tone) of `seconds`, tiny frames so many of them stay cheap."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}", "-c:a", "aac"]
    run_ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-shortest", str(path))
    return str(path)


@pytest.fixture(scope="module")
def long_media():
    """10.3 s: three 4-s audio windows, five 2-s chunks and a partial one."""
    return {kind: synthetic_media(seconds=10.3, **kw) for kind, kw in KINDS.items()}


# --- the prompt ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("seconds, model", [(4.0, "tiny_lm"), (10.3, "tiny_lm_w4")])
def test_stream_prompt_is_the_one_shot_prompt(request, kind, seconds, model):
    """Ids and positions built from counts alone equal the processor's on the whole clip (short, and with the
    soundtrack in several windows)."""
    lm = request.getfixturevalue(model)
    media = synthetic_media(seconds=seconds, **KINDS[kind])
    one_shot, streamed = ClipSession(lm, media).prompt, StreamPrompt.build_stream(lm, media)
    assert "pixel_values_videos" not in streamed.inputs and "input_features" not in streamed.inputs
    assert torch.equal(streamed.input_ids, one_shot.input_ids)
    assert torch.equal(streamed.positions, one_shot.positions)
    assert torch.equal(streamed.layout.modality, one_shot.layout.modality)
    assert streamed.suffix == one_shot.suffix


def test_steps_follow_the_two_second_chunks(tiny_lm_w4, long_media):
    """One step per 2-s interleave chunk, contiguous, covering the prefix; media of a step within its 2 s."""
    layout = StreamPrompt.build_stream(tiny_lm_w4, long_media["av"]).layout
    steps = plan_steps(layout)
    assert steps[0][0] == 0 and steps[-1][1] == len(layout) and len(steps) == 6
    assert all(a[1] == b[0] for a, b in zip(steps, steps[1:]))
    for k, (start, end) in enumerate(steps):
        media = layout.media_mask[start:end]
        times = layout.time_s[start:end][media]
        assert times.min() >= 2 * k and times.max() < 2 * k + 2
    assert len(plan_steps(layout, chunk_seconds=4.0)) == 3


def test_chunk_inputs_equal_the_one_shot_decoder_inputs(tiny_lm_w4, long_media):
    """The vision tower per frame-pair chunk and the audio tower per feature window give the one-shot decoder
    inputs: every step's embeddings equal the same rows of transformers' own merge."""
    media = long_media["av"]
    prompt = StreamPrompt.build_stream(tiny_lm_w4, media)
    encoder = ChunkEncoder(tiny_lm_w4, prompt)
    streamed = torch.cat([encoder.embeds(a, b)["inputs_embeds"] for a, b in plan_steps(prompt.layout)], dim=1)
    reference = ClipSession(tiny_lm_w4, media).embedded["inputs_embeds"]
    assert torch.allclose(streamed, reference, atol=1e-5)
    assert encoder.audio.encoded == 3 and encoder.audio.cache == {}  # each window once, none kept at the end


# --- exactness and the memory bound --------------------------------------------------------------------

@pytest.mark.parametrize("kind, method, chunk_seconds", [("av", "full", 2.0), ("video", "full", 2.0),
                                                          ("audio", "full", 2.0), ("av", "snapkv", 2.0),
                                                          ("av", "acckv", 4.0)])
def test_keep_everything_stream_equals_one_shot(tiny_lm_w4, long_media, kind, method, chunk_seconds):
    """A budget that keeps every media entry: streamed prefill = one-shot prefill (first-answer logits within
    1e-4, same greedy answer), whatever the method scoring each step."""
    media = long_media[kind]
    params = {"calibration": False, "merge_target": "none"} if method == "acckv" else {}
    compressor, keep_all = get_method(method, **params), Budget(1.0)
    one_shot = ClipSession(tiny_lm_w4, media).ask([QUESTION], get_method("full"), keep_all, "context", 4)[0]
    session = StreamSession(tiny_lm_w4, media, chunk_seconds=chunk_seconds)
    streamed = session.ask([QUESTION], compressor, keep_all, "stream", 4)[0]
    assert (streamed.first_logits - one_shot.first_logits).abs().max() < 1e-4
    assert streamed.token_ids == one_shot.token_ids
    assert streamed.report.summary()["media_kept_ratio"] == 1.0


STREAMABLE = sorted(name for name, cls in METHODS.items() if stream_refusal(cls()) is None)


def test_the_refused_methods_are_exactly_those_that_cannot_keep_the_bound():
    assert sorted(set(METHODS) - set(STREAMABLE)) == ["fastv", "pyramidkv", "taskfocus"]


@pytest.mark.parametrize("method", [m for m in STREAMABLE if m != "full"])  # `full` keeps the whole clip
def test_cache_never_exceeds_budget_plus_one_step(tiny_lm_w4, long_media, method):
    """At every step, every layer holds at most protected + cap + the step's tokens before compression and at
    most protected + cap after; the whole cache's bytes likewise. The report's kept indices are prompt media
    and text entries with the right modality counts."""
    session = StreamSession(tiny_lm_w4, long_media["av"], chunk_seconds=2.0)
    answer = session.ask([QUESTION], build_method(method), Budget(40), "stream", 1)[0]
    run = session.last_stream.run
    layers = tiny_lm_w4.thinker.config.text_config.num_hidden_layers
    assert run.cap == MediaCap(40) and len(run.trace) == len(session.last_stream.steps) * layers
    protected = int(session.prompt.layout.protected_mask.sum())
    peak_step = max(end - start for start, end in session.last_stream.steps)
    for t in run.trace:
        assert t["before"] <= t["protected"] + 40 + (t["end"] - t["start"]), t
        assert t["after"] <= t["protected"] + 40, t
        assert t["protected"] <= protected
    entry = run.layers[0]["kv_bytes_before"] // len(session.prompt.layout)  # bytes of one entry in one layer
    assert run.peak_kv_bytes <= entry * (layers * (protected + 40) + peak_step)
    layout = session.prompt.layout
    for record in run.layers:
        keep = record["keep"] if record["keep"].ndim == 2 else record["keep"][None]
        for row in keep:
            assert int(layout.media_mask[row].sum()) <= 40 and bool(layout.protected_mask[row].sum() == protected)
    assert answer.report.summary()["media_kept_ratio"] <= 40 / int(layout.media_mask.sum()) + 1e-6


def test_ratio_budget_is_a_share_of_the_whole_clip(tiny_lm_w4, long_media):
    """--budget 0.2 under stream caps every step at 20 % of the whole clip's media (not of the cache + step)."""
    session = StreamSession(tiny_lm_w4, long_media["av"])
    session.ask([QUESTION], get_method("snapkv"), Budget(0.2), "stream", 1)
    total = int(session.prompt.layout.media_mask.sum())
    assert session.last_stream.run.cap == MediaCap(round(0.2 * total))


def test_many_questions_share_one_streamed_cache(tiny_lm_w4, long_media):
    """Several questions: one streaming prefill, each question appended and cut back (same report), and each
    answer equal to the question asked alone on a fresh stream (same tokens, first-token logits within 1e-6).
    Catches: a question's entries left in the streamed cache for the next one, or the stream's state (cap,
    stash, layout) moved by the first question."""
    questions = [QUESTION, "What colour is the square?", "Which instrument plays while the star is visible?"]
    session = StreamSession(tiny_lm_w4, long_media["av"])
    answers = session.ask(questions, get_method("snapkv"), Budget(0.3), "stream", 3)
    assert answers[1].reused == ["media_prefill", "decode", "encode"]
    assert answers[0].report.to_dict() == answers[1].report.to_dict()
    for question, together in zip(questions, answers):
        alone = StreamSession(tiny_lm_w4, long_media["av"]).ask([question], get_method("snapkv"), Budget(0.3),
                                                               "stream", 3)[0]
        assert together.token_ids == alone.token_ids
        assert torch.allclose(together.first_logits, alone.first_logits, atol=1e-6)
    assert not torch.allclose(answers[0].first_logits, answers[1].first_logits)  # the questions differ


def test_unstreamable_inputs_are_one_line_errors(q3_lm, tiny_lm_w4, long_media):
    with pytest.raises(StreamUnsupported, match="Qwen3-Omni interleaves per token"):
        StreamSession(q3_lm, synthetic_media())
    with pytest.raises(StreamUnsupported, match="fastv prunes inside one forward"):
        StreamSession(tiny_lm_w4, long_media["av"]).ask([QUESTION], get_method("fastv"), Budget(0.2), "stream", 1)
    for name, reason in (("pyramidkv", "pyramid"), ("taskfocus", "question")):
        with pytest.raises(StreamUnsupported, match=f"{name} cannot stream: .*{reason}"):
            StreamSession(tiny_lm_w4, long_media["av"]).ask([QUESTION], get_method(name), Budget(0.2), "stream", 1)
    with pytest.raises(Exception, match="StreamSession"):
        ClipSession(tiny_lm_w4, long_media["av"]).media_cache_for("stream", get_method("acckv"), Budget(0.2))


def test_timings_are_per_streamed_media_cache(tmp_path, tiny_lm, count_calls):
    """A second media cache on the same stream session (another budget, as `eval` does per method and budget)
    decodes its frames and runs the encoders again, block by block: its first answer reports those costs and
    reuses nothing; its second answer lists decode, encode and media_prefill as reused. Counted by hooks
    too: the second cache re-encodes as much as the first. Catches the per-session bookkeeping that reported
    `decode_s 0`, `encode_s 0` and `reused ['decode', 'encode']` for a stream that had paid both again."""
    path = make_clip(tmp_path / "clip.mp4", 6, rate=10, size="64x48")
    session = StreamSession(tiny_lm, decode_for_model(tiny_lm, path, lazy_frames=True))
    counts = []
    answers = []
    for budget in (Budget(0.3), Budget(0.1)):
        with count_calls(tiny_lm.thinker, long=1000) as calls:
            answers.append(session.ask([QUESTION, "What colour is the square?"], get_method("snapkv"), budget,
                                       "stream", 1))
        counts.append((calls.audio, calls.video))
    assert counts[0] == counts[1] and counts[1][1] >= 1  # the second stream encoded its blocks again
    for first, second in answers:
        assert first.reused == [] and first.timings["decode_s"] > 0 and first.timings["encode_s"] > 0
        assert first.timings["media_prefill_s"] > 0
        assert second.reused == ["media_prefill", "decode", "encode"]
        assert second.timings["decode_s"] == second.timings["encode_s"] == second.timings["media_prefill_s"] == 0
    # the session's totals: both streams' frames and encoders
    assert session.encode_s >= answers[0][0].timings["encode_s"] + answers[1][0].timings["encode_s"] - 1e-3


# --- frames: per chunk, fps kept, position range --------------------------------------------------------

def test_frames_are_decoded_per_chunk(tmp_path, tiny_lm):
    """A streamed file decodes its frames in order, each once, and the slices equal the full decode's frames:
    per 2-s step without front-end blocks, in one block when the whole clip fits the block bound."""
    path = make_clip(tmp_path / "clip.mp4", 9, rate=10, size="64x48")
    eager = decode_for_model(tiny_lm, path)
    lazy = decode_for_model(tiny_lm, path, lazy_frames=True)
    assert lazy.frames.reads == [] and len(lazy.frames) == len(eager.frames) == 18
    assert np.array_equal(lazy.frames[5:9], eager.frames[5:9])
    for block_mb, expected in ((None, [(4 * k, min(4 * k + 4, 18)) for k in range(5)]), (64, [(0, 18)])):
        lazy.frames.reads.clear()
        session = StreamSession(tiny_lm, lazy, chunk_seconds=2.0, block_mb=block_mb)
        session.ask([QUESTION], get_method("snapkv"), Budget(0.2), "stream", 1)
        reads = [r for r in lazy.frames.reads if r[1] - r[0] > 2 or r[0] > 0]  # (the grid probe reads frames 0–2)
        assert reads == expected  # 2 s at 2 fps = 4 frames per step, or the whole clip in one block
        assert session.last_encoder.max_frames_read == expected[0][1]


def test_requested_fps_is_kept_beyond_768_frames(tmp_path, tiny_lm):
    """400 s at 2 fps is 800 frames: kept (Qwen's sampling would cap it at 768, i.e. 1.92 fps)."""
    path = make_clip(tmp_path / "long.mp4", 400, rate=2, size="32x32", audio=False)
    decoded = decode_for_model(tiny_lm, path, fps=2.0, lazy_frames=True)
    assert len(decoded.frames) == 800 and decoded.sample_fps == pytest.approx(2.0, abs=1e-3)
    assert decoded.frames.reads == []  # nothing decoded yet
    capped = media_mod.decode(path, fps=2.0, lazy_frames=True, max_pixels=64 * 28 * 28)
    assert len(capped.frames) == 768  # the official default, kept for the pipeline comparisons


def test_clip_beyond_the_position_range_is_a_one_line_error(tmp_path):
    """1300 s > the 1290 s that 32,768 positions at 25 per second hold (minus 512 for text): exit code 2,
    one line naming the longest duration, before anything is decoded."""
    path = make_clip(tmp_path / "too_long.mp4", 1300, rate=1, size="32x32", audio=False)
    assert longest_clip_s(load_model()) == pytest.approx((32768 - 512) / 25)
    for protocol in ("stream", "context"):
        result = runner.invoke(app, ["ask", path, "What do you see?", "--protocol", protocol])
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "1300 s" in lines[0] and "1290 s" in lines[0] and "trim" in lines[0]


def test_exact_position_check_on_the_prompt(tiny_lm, monkeypatch):
    """The prompt's own positions are checked too (a clip whose container understates its length)."""
    prompt = ClipSession(tiny_lm, synthetic_media(seconds=4.0)).prompt
    check_prompt(tiny_lm, prompt.layout)
    monkeypatch.setattr(tiny_lm.thinker.config.text_config, "max_position_embeddings", 600)
    with pytest.raises(ClipTooLong, match="longer than the 3 s"):
        check_prompt(tiny_lm, prompt.layout)


# --- the commands --------------------------------------------------------------------------------------

def test_ask_batch_and_eval_take_the_stream_protocol(tmp_path):
    """`ask`, `batch` and `eval` run --protocol stream end to end on a file longer than the demo model's 15-s
    audio window: the whole soundtrack and every frame at 2 fps (from a 4-fps file) are used."""
    path = make_clip(tmp_path / "long.mp4", 20, rate=4, size="64x48")
    result = runner.invoke(app, ["ask", path, "What instrument plays?", "What colour is the square?",
                                 "--protocol", "stream", "--method", "snapkv", "--json", "--max-new-tokens", "2",
                                 "--chunk-seconds", "4"])
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["protocol"] for r in rows] == ["stream", "stream"] and rows[1]["reused"]
    assert rows[0]["media"]["frames"] == 40 and rows[0]["tokens"]["audio"] == 20 * 25
    assert "encoded whole, in 2 windows" in result.stderr and "streamed in 5 steps of 4 s" in result.stderr
    out = tmp_path / "batch.jsonl"
    result = runner.invoke(app, ["batch", str(tmp_path), "--question", "What plays?", "--out", str(out),
                                 "--protocol", "stream", "--method", "snapkv", "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.stderr
    record = json.loads(out.read_text().splitlines()[0])
    assert record["error"] is None and record["protocol"] == "stream"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": path, "question": "What plays?", "answer": "flute"}) + "\n")
    result = runner.invoke(app, ["eval", "--manifest", str(manifest), "-m", "full", "-m", "snapkv", "--budgets", "0.2",
                                 "--protocols", "stream", "--out-dir", str(tmp_path / "eval"), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert {(e["protocol"], e["method"]) for e in summary} == {("stream", "full"), ("stream", "snapkv")}
    assert all(e["errors"] == 0 for e in summary)


@pytest.mark.parametrize("args, message", [(["--chunk-seconds", "3", "--protocol", "stream"], "multiple of Qwen's 2-s"),
                                           (["--chunk-seconds", "-2", "--protocol", "stream"], "multiple of Qwen's 2-s"),
                                           (["--chunk-seconds", "4", "--protocol", "context"], "--protocol stream")])
def test_chunk_seconds_is_checked_before_the_model_loads(tmp_path, monkeypatch, args, message):
    """A step that is no whole number of 2-s chunks, or one given without streaming: one line, exit code 2, and
    the model is never loaded (its loader would fail the test)."""
    from acckv_cli import options

    monkeypatch.setattr(options.RunOptions, "load", lambda self: pytest.fail("the model was loaded"))
    path = make_clip(tmp_path / "c.mp4", 2, rate=2, size="32x32")
    for command in (["ask", path, "What?"], ["batch", str(tmp_path), "--question", "What?", "--out",
                                             str(tmp_path / "o.jsonl")],
                    ["eval", "--split", "test", "--clips", "1", "--out-dir", str(tmp_path / "eval")]):
        result = runner.invoke(app, [*command, *args])
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.stderr
