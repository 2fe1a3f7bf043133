"""`acckv inspect`: per-layer attention shares, AccKV's priority, takeover layer, timeline, JSON and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acckv_cli.cli.app import app
from acckv_cli.answer.inspection import takeover_layer
from acckv_cli.methods import Budget
from acckv_cli.model.load import load_model
from acckv_cli.answer.pipeline import ask_clip
from media_fixtures import RECIPES, run_ffmpeg

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CLIP = str(SAMPLES / "flute_red_circle.mp4")
runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def inspect_json(*args: str) -> dict:
    result = runner.invoke(app, ["inspect", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, "--json must print exactly one JSON object and nothing else on stdout"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def flute(tmp_path_factory):
    png = tmp_path_factory.mktemp("inspect") / "out.png"
    out = inspect_json(CLIP, "What instrument plays?", "--plot", str(png))
    return out, png


def test_json_has_one_entry_per_layer(flute):
    out, _ = flute
    n_layers = len(load_model().decoder_layers)
    assert [l["layer"] for l in out["layers"]] == list(range(n_layers))
    for layer in out["layers"]:
        for key in ("share_raw", "share_redistributed"):
            shares = layer[key]
            assert set(shares) == {"video", "audio", "text"}
            assert sum(shares.values()) == pytest.approx(1.0, abs=1e-4)
            assert all(0 <= v <= 1 for v in shares.values())
        assert sum(layer["weights"].values()) == pytest.approx(1.0, abs=1e-4)
    # priorities: equal to AccKV's (test_inspect_agrees_with_what_acckv_decides), whose weights and priority are
    # checked against eager attention in tests/test_methods.py::test_acckv_focus_weights_priority_and_quotas_...
    assert out["takeover_layer"] == takeover_layer([l["priority"] for l in out["layers"]], True)
    assert out["question"] == "What instrument plays?" and out["tokens"]["query_rows"] > 0


def test_timeline_adds_up_to_the_layer_shares(flute):
    out, _ = flute
    timeline = out["timeline"]
    seconds = [r["second"] for r in timeline]
    assert seconds == list(range(len(seconds))) and abs(len(seconds) - out["media"]["duration_s"]) <= 1
    for kind in ("video", "audio"):
        for i, layer in enumerate(out["layers"]):
            per_second = sum(r[f"{kind}_per_layer"][i] for r in timeline)
            assert per_second == pytest.approx(layer["share_raw"][kind], abs=1e-4)
        for r in timeline:
            assert r[kind] == pytest.approx(sum(r[f"{kind}_per_layer"]) / len(out["layers"]), abs=1e-5)


def test_inspect_agrees_with_what_acckv_decides(flute):
    """Same prefill, same statistics: inspect's weights/priority/raw shares are AccKV's own."""
    out, _ = flute
    asked = ask_clip(load_model(), CLIP, ["What instrument plays?"], "acckv", Budget(0.2), protocol="prefill",
                     max_new_tokens=1)[0]
    for mine, theirs in zip(out["layers"], asked.report.layers, strict=True):
        assert mine["priority"] == theirs["priority"]
        for kind, w in theirs["weights"].items():
            assert mine["weights"][kind] == pytest.approx(w, abs=1e-3)
        for kind, share in theirs["attention_share"].items():
            assert mine["share_raw"][kind] == pytest.approx(share, abs=1e-4)


def test_plot_is_a_png(flute):
    _, png = flute
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 30_000
    import matplotlib.image
    height, width, _ = matplotlib.image.imread(str(png)).shape
    assert width >= 1000 and height >= 800


def test_video_only_and_audio_only(tmp_path):
    video_only = tmp_path / "video_only.mp4"
    run_ffmpeg(*RECIPES["video_only.mp4"], str(video_only))
    for path, missing, present in ((str(video_only), "audio", "video"), (str(SAMPLES / "bell.wav"), "video", "audio")):
        out = inspect_json(path)
        assert out["question"] == "What is happening in this clip?"
        assert out["takeover_layer"] is None
        assert out["tokens"][missing] == 0
        for layer in out["layers"]:
            assert layer["share_raw"][missing] == 0 and layer["share_redistributed"][missing] == 0
            assert layer["weights"] == {present: 1.0, missing: 0.0} and layer["priority"] == present
            assert layer["share_raw"][present] > 0
        assert all(r[missing] == 0 for r in out["timeline"]) and any(r[present] > 0 for r in out["timeline"])


def test_human_output_and_plot_without_audio(tmp_path):
    png = tmp_path / "bell.png"
    result = runner.invoke(app, ["inspect", str(SAMPLES / "bell.wav"), "--plot", str(png)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    for text in ("Where the question's attention goes", "Attention per second", "Only one media modality"):
        assert text in result.stdout
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_takeover_layer():
    assert takeover_layer(["audio", "video", "video"], True) == 1
    assert takeover_layer(["video", "video", "video"], True) == 0
    assert takeover_layer(["video", "audio", "video", "video"], True) == 2
    assert takeover_layer(["video", "video", "audio"], True) is None
    assert takeover_layer(["video", "video"], False) is None
    assert takeover_layer([], True) is None


@pytest.mark.parametrize("args, words", [
    (["--plot", "out.jpg"], ["--plot"]),
    (["--plot", "/no/such/folder/out.png"], ["does not exist"]),
    (["--fps", "0.5"], ["--fps"]),
])
def test_usage_errors(args, words):
    result = runner.invoke(app, ["inspect", CLIP, *args], catch_exceptions=False)
    assert result.exit_code == 2
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and all(w in lines[0] for w in words)


def test_plot_panels_have_distinct_labels_and_one_colour_scale_for_video_and_audio(flute):
    """(a)–(d), not two panels labelled (b); the video and audio heatmaps share one colour scale (it was
    0–10 % for one and 0–35 % for the other, so their colours could not be compared)."""
    import matplotlib.pyplot as plt

    from acckv_cli.answer.inspection import figure

    out, _ = flute
    fig = figure(out)
    try:
        axes = fig.axes[:4]
        labels = [ax.get_title().split()[0] for ax in axes]
        assert labels == ["(a)", "(b)", "(c)", "(d)"]
        video, audio = (ax.images[0] for ax in axes[2:4])
        assert video.get_clim() == audio.get_clim()
        peak = max(max(r["video_per_layer"] + r["audio_per_layer"]) for r in out["timeline"]) * 100
        assert video.get_clim()[1] == pytest.approx(peak, rel=1e-6)
    finally:
        plt.close(fig)


def test_inspect_takes_the_method_grammar():
    """-m acckv:KEY=VALUE and -o KEY=VALUE set the AccKV whose scores are measured."""
    default = inspect_json(CLIP, "What instrument plays?")
    all_rows = inspect_json(CLIP, "What instrument plays?", "-m", "acckv:score_queries=all")
    via_o = inspect_json(CLIP, "What instrument plays?", "-m", "acckv", "-o", "score_queries=all")
    assert default["acckv"]["score_queries"] == "text" and all_rows["acckv"]["score_queries"] == "all"
    assert via_o["layers"] == all_rows["layers"] and all_rows["layers"] != default["layers"]
    result = runner.invoke(app, ["inspect", CLIP, "-m", "snapkv"])
    assert result.exit_code == 2 and "inspect measures AccKV" in result.stderr
