"""`acckv bench --stream` plumbing and the long SynthAVQA generator, on the tiny shape (seconds, not minutes).

What the bench reports must hold by construction whatever the machine: the streamed cache's fullest moment
is the same for every clip length (cap + one step), the one-shot one grows with the clip.
"""

from __future__ import annotations

import json

import pytest

from acckv_cli.bench.prompts import SyntheticMediaPrompt, synthetic_clip
from acckv_cli.bench.shapes import shape_for
from acckv_cli.bench.stream import StreamBenchConfig, main, markdown, run
from acckv_cli.model.layout import Modality
from acckv_cli.answer.stream import plan_steps
from acckv_cli.synth.long import LATE_S, make_long_example, write_long_set


def test_synthetic_clip_is_laid_out_by_time():
    """25 audio tokens per second, one frame pair per second at 2 fps, 2-s steps with both."""
    clip = synthetic_clip(60, vocab=1024, fps=2.0, pair_tokens=8)
    layout = clip.layout
    assert layout.counts()["audio"] == 60 * 25 and layout.counts()["video"] == 60 * 8
    assert abs(layout.duration_s - 59.96) < 0.05
    steps = plan_steps(layout.prefix(int((layout.modality == int(Modality.QUESTION)).nonzero().min())))
    assert len(steps) == 30


def test_stream_kv_peak_is_flat_and_one_shot_grows():
    cfg = StreamBenchConfig(minutes=(0.1, 0.3), tiny=True, isolate=False, method="snapkv", budget=32, new_tokens=1,
                            chunk_seconds=2.0)
    result = run(cfg)
    rows = {(r["mode"], r["minutes"]): r for r in result["rows"]}
    assert rows[("stream", 0.1)]["kv_peak_mb"] == rows[("stream", 0.3)]["kv_peak_mb"]
    assert rows[("one-shot", 0.3)]["kv_peak_mb"] > 2 * rows[("one-shot", 0.1)]["kv_peak_mb"]
    assert rows[("stream", 0.3)]["kv_peak_mb"] < rows[("one-shot", 0.3)]["kv_peak_mb"]
    assert rows[("stream", 0.3)]["steps"] == 9 and rows[("one-shot", 0.3)]["steps"] == 1
    table = markdown(result)
    assert table.count("\n| 0.") == 2 and "target" in table
    assert set(result["targets"]) >= {"stream_peak_flat", "time_ok", "stream_over_one_shot_time",
                                      "stream_over_one_shot_cpu"}
    assert all(r["prefill_cpu_s"] > 0 for r in result["rows"]) and "in CPU time: ×" in table


def test_default_step_is_the_stream_protocols():
    """Left to its default, the bench streams as `ask` does: the fewest 2-s chunks holding 512 tokens (16 s of
    this synthetic clip's 33 tokens per second), and says so in its rows and table."""
    result = run(StreamBenchConfig(minutes=(0.5,), tiny=True, isolate=False, method="snapkv", budget=32,
                                   new_tokens=1))
    stream = next(r for r in result["rows"] if r["mode"] == "stream")
    assert stream["step_s"] == 16.0 and stream["steps"] == 2  # 30 s of media: 16 s, then the rest
    assert "| 2 × 16 s |" in markdown(result)


def test_worker_prints_one_json_point(capsys):
    config = {"minutes": [0.1], "tiny": True, "budget": 16, "new_tokens": 1}
    main(["--worker", json.dumps({"config": config, "mode": "stream", "minutes": 0.1})])
    point = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert point["mode"] == "stream" and isinstance(point["peak_rss_mb"], float)  # PeakRSS: tests/test_bench.py
    # the final cache holds every text entry plus the 16 media entries of the budget, in every layer
    # (counted from the synthetic clip's own layout, not from the run's records)
    shape = shape_for(True)
    prefix = SyntheticMediaPrompt.split(synthetic_clip(6.0, shape.vocab, 2.0, 8)).layout
    entries = int(prefix.protected_mask.sum()) + 16
    per_entry = 2 * shape.kv_heads * shape.head_dim * 4  # K and V, float32
    assert point["kv_final_mb"] == round(StreamBenchConfig().layers * entries * per_entry / 2**20, 3)


def test_long_clips_have_late_events_and_exact_answers(tmp_path):
    for index in range(6):
        example = make_long_example("test", index)
        spec = example.spec
        assert 60 <= spec.duration_s <= 120
        assert max(e.start_s for e in spec.sound_events) > LATE_S
        assert {q.family for q in example.questions} == {"audio", "video", "alignment"}
    assert make_long_example("test", 3) == make_long_example("test", 3)
    assert make_long_example("test", 0).spec != make_long_example("validation", 0).spec
    with pytest.raises(ValueError, match="unknown split"):
        make_long_example("train", 0)
    manifest = write_long_set("test", 1, tmp_path)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 3 and (tmp_path / rows[0]["video"]).is_file()
    assert all(r["evidence"] is not None for r in rows)
