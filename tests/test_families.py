"""Model families: the adapter is chosen from the checkpoint's config, and a Qwen3-Omni folder (thinker-only
or laid out like a full checkpoint) works through `load_model`, `ask` (CLI, JSON), `inspect`, `batch` and
`eval` with no other change for the user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from acckv_cli.cli.app import app
from acckv_cli.model.families import (QWEN2_5_OMNI, QWEN3_OMNI, UnsupportedModel, family_for_checkpoint, family_for_config,
                                family_for_processor, family_of)
from acckv_cli.model.load import ModelUnavailable, load_model, processor_kwargs
from acckv_cli.testing.tiny import as_full_checkpoint, save_tiny_thinker
from acckv_cli.testing.qwen3 import save_tiny_qwen3_thinker
from conftest import Prompt, synthetic_media

ROOT = Path(__file__).resolve().parent.parent
CLIP = str(ROOT / "samples" / "flute_red_circle.mp4")
runner = CliRunner()


@pytest.fixture(scope="module")
def q3_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen3")
    return {"thinker": save_tiny_qwen3_thinker(root / "thinker"),
            "full": save_tiny_qwen3_thinker(root / "full", full_checkpoint=True)}


def one_line_error(result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --- choosing the family --------------------------------------------------------------------------------

def test_family_from_the_config_of_a_full_or_thinker_only_checkpoint(tiny, tiny_q3):
    for family, types in ((QWEN2_5_OMNI, ("qwen2_5_omni", "qwen2_5_omni_thinker")),
                          (QWEN3_OMNI, ("qwen3_omni_moe", "qwen3_omni_moe_thinker"))):
        for model_type in types:
            assert family_for_config({"model_type": model_type}) is family
    assert family_of(tiny[0]) is QWEN2_5_OMNI and family_of(tiny_q3[0]) is QWEN3_OMNI
    assert family_for_processor(tiny[1]) is QWEN2_5_OMNI and family_for_processor(tiny_q3[1]) is QWEN3_OMNI
    with pytest.raises(UnsupportedModel, match=r"'llama' \(LlamaForCausalLM\) is not supported; supported: "
                                               r"Qwen2.5-Omni, Qwen3-Omni"):
        family_for_config({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})


def test_family_facts_that_differ():
    """Pixel factor and ranges, audio window, rate, position dtype: each differs, each read from the family."""
    assert (QWEN2_5_OMNI.factor, QWEN3_OMNI.factor) == (28, 32)
    published = {"shortest_edge": 3136, "longest_edge": 12845056}  # the image range checkpoints ship
    assert QWEN2_5_OMNI.pixel_range(published) == (128 * 28 * 28, 768 * 28 * 28)
    assert QWEN3_OMNI.pixel_range(published) == QWEN3_OMNI.pixel_range(None) == (128 * 32 * 32, 768 * 32 * 32)
    assert QWEN3_OMNI.pixel_range({"shortest_edge": 4096, "longest_edge": 65536}) == (4096, 65536)  # its own
    assert (QWEN2_5_OMNI.positions_per_second, QWEN3_OMNI.positions_per_second) == (25, 13)
    assert not QWEN2_5_OMNI.float_positions and QWEN3_OMNI.float_positions


def test_qwen3_never_truncates_audio(q3_lm, tiny_lm):
    """Qwen2.5-Omni's processor cuts audio at its 30-s window (so acckv encodes it window by window, with a
    notice); Qwen3-Omni's pads and keeps everything (40 s → 520 audio tokens at 13 per second), so nothing is
    windowed or noticed."""
    media = synthetic_media(seconds=40.0, video=False)
    assert q3_lm.audio_limit_s is None and tiny_lm.audio_limit_s == 30.0
    notices: list[str] = []
    kwargs, _ = processor_kwargs(q3_lm, media, notices=notices)
    assert notices == [] and kwargs["audio"][0].shape[0] == 40 * 16000
    assert Prompt(q3_lm, media).layout.counts()["audio"] == 520
    processor_kwargs(tiny_lm, media, notices=notices)
    assert notices == ["soundtrack of 40 s encoded whole, in 2 windows of the model's 30 s audio window"]


def test_use_audio_in_video_is_set_for_video_with_its_soundtrack(q3_lm, q3_av_prompt):
    """The processor output does not carry the flag; without it get_rope_index gives plain 1-D positions."""
    from acckv_cli.model.layout import layout_for_inputs

    _, flag = processor_kwargs(q3_lm, synthetic_media())
    assert flag is True and q3_av_prompt.use_audio_in_video is True
    assert processor_kwargs(q3_lm, synthetic_media(audio=False))[1] is False
    lay = q3_av_prompt.layout
    video = lay.media_mask & (lay.col >= 0)
    assert bool((lay.positions[2, video] != lay.positions[0, video]).any())  # 3-D positions for the video cells
    without = layout_for_inputs(q3_lm.thinker, q3_lm.processor, q3_av_prompt.inputs, use_audio_in_video=False)
    assert torch.equal(without.positions[0], torch.arange(len(lay), dtype=torch.float32))
    assert not torch.equal(without.positions, lay.positions)


# --- loading a folder --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["thinker", "full"])
def test_load_model_reads_a_qwen3_folder(q3_folders, tiny_q3, q3_av_prompt, layout):
    folder = q3_folders[layout]
    expected_type = {"thinker": "qwen3_omni_moe_thinker", "full": "qwen3_omni_moe"}[layout]
    assert json.loads((folder / "config.json").read_text())["model_type"] == expected_type
    assert family_for_checkpoint(str(folder)) is QWEN3_OMNI
    lm = load_model(str(folder), device="cpu", dtype="float32")
    assert lm.family is QWEN3_OMNI and lm.notices == [] and lm.name == str(folder)
    assert type(lm.thinker).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    assert type(lm.processor).__name__ == "Qwen3OmniMoeProcessor"
    loaded, reference = lm.thinker.state_dict(), tiny_q3[0].state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], v) for k, v in reference.items())  # every weight read, none left random
    assert lm.pixel_range == (4 * 32 * 32, 64 * 32 * 32) and lm.audio_limit_s is None
    prompt = Prompt(lm, synthetic_media())
    assert torch.equal(prompt.inputs["input_ids"], q3_av_prompt.inputs["input_ids"])
    assert torch.equal(prompt.layout.positions, q3_av_prompt.layout.positions)


def test_load_model_reads_a_full_qwen2_5_checkpoint(tmp_path, tiny):
    folder = as_full_checkpoint(save_tiny_thinker(tmp_path / "m"), "Qwen2_5OmniModel", "qwen2_5_omni")
    lm = load_model(str(folder), device="cpu", dtype="float32")
    assert lm.family is QWEN2_5_OMNI and type(lm.processor).__name__ == "Qwen2_5OmniProcessor"
    loaded = lm.thinker.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in tiny[0].state_dict().items())


def test_a_config_rate_that_disagrees_with_the_processor_is_aligned(tmp_path, q3_av_prompt):
    """Qwen3-Omni's config class defaults to 25 positions/s, its processor interleaves at 13: a checkpoint
    config at 25 would position the tokens in another order than the processor wrote them
    (docs/qwen3-omni-notes.md §3.4)."""
    folder = save_tiny_qwen3_thinker(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["position_id_per_seconds"] = 25
    (folder / "config.json").write_text(json.dumps(config))
    lm = load_model(str(folder), device="cpu", dtype="float32")
    assert lm.thinker.config.position_id_per_seconds == 13
    assert lm.notices == ["the checkpoint's position_id_per_seconds (25) disagrees with its processor's (13); "
                          "using 13"]
    assert torch.equal(Prompt(lm, synthetic_media()).layout.positions, q3_av_prompt.layout.positions)
    lm.thinker.config.position_id_per_seconds = 25  # what loading without the alignment would leave
    assert not torch.equal(Prompt(lm, synthetic_media()).layout.positions, q3_av_prompt.layout.positions)


def test_an_unsupported_folder_is_a_one_line_runtime_error(tmp_path):
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ModelUnavailable, match="not supported; supported: Qwen2.5-Omni, Qwen3-Omni"):
        load_model(str(folder), device="cpu")
    result = runner.invoke(app, ["ask", CLIP, "What plays?", "--model", str(folder)])
    one_line_error(result, 1, "not supported", "Qwen3-Omni")


def test_a_broken_qwen3_folder_names_the_family(tmp_path):
    folder = save_tiny_qwen3_thinker(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelUnavailable, match="cannot load a Qwen3-Omni thinker from folder"):
        load_model(str(folder), device="cpu")


# --- the commands on a Qwen3-Omni folder ---------------------------------------------------------------------

def test_cli_ask_json_with_a_qwen3_checkpoint(q3_folders):
    """The user's path: `python -m acckv_cli ask VIDEO Q --model DIR --json`, nothing else changed."""
    folder = str(q3_folders["full"])
    proc = subprocess.run([sys.executable, "-m", "acckv_cli", "ask", CLIP, "What instrument plays?", "--model", folder,
                           "--json", "--max-new-tokens", "3"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == folder and out["method"] == "acckv" and out["protocol"] == "query-aware"
    assert abs(out["tokens"]["audio"] - 13 * out["media"]["audio_seconds"]) <= 1.5  # 13 audio tokens per second
    width, height = out["media"]["frame_size"]
    assert width % 32 == 0 and height % 32 == 0 and out["media"]["pixels_per_frame"] == width * height
    assert out["media"]["pixels_per_frame"] <= 64 * 32 * 32  # the folder's own video range
    assert out["tokens"]["video"] == out["media"]["tokens_per_frame_pair"] * (out["media"]["frames"] // 2)
    layers = out["report"]["layers"]
    assert len(layers) == 3 and all(l["text_kept"] == l["text_total"] for l in layers)
    assert 0 < out["media_kept_ratio"] <= 0.25 and out["kv_bytes"] < out["kv_bytes_full"]


def test_inspect_batch_and_eval_with_a_qwen3_checkpoint(q3_folders, tmp_path):
    folder = str(q3_folders["thinker"])
    result = runner.invoke(app, ["inspect", CLIP, "What instrument plays?", "--model", folder, "--json"])
    assert result.exit_code == 0, result.stderr
    inspected = json.loads(result.stdout)
    assert [l["layer"] for l in inspected["layers"]] == [0, 1, 2]
    assert all(sum(l["share_raw"].values()) == pytest.approx(1.0, abs=1e-4) for l in inspected["layers"])
    assert len(inspected["timeline"]) >= 4  # a 4-s clip: per-second bins from the layout's times (13/s)

    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copyfile(CLIP, clips / "a.mp4")
    shutil.copyfile(ROOT / "samples" / "bell.wav", clips / "b.wav")  # audio-only: no deepstack inputs at all
    out = tmp_path / "batch.jsonl"
    result = runner.invoke(app, ["batch", str(clips), "--question", "What plays?", "--out", str(out),
                                 "--model", folder, "--method", "fastv", "--budget", "0.5", "--max-new-tokens", "1"])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and all(line["error"] is None for line in lines)

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "video": CLIP, "question": "What instrument plays?",
                                    "answer": "flute", "family": "audio"}) + "\n")
    result = runner.invoke(app, ["eval", "--manifest", str(manifest), "-m", "full", "-m", "acckv", "-m", "h2o", "--budgets",
                                 "0.3", "--out-dir", str(tmp_path / "eval"), "--model", folder, "--json",
                                 "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("error" not in r for r in rows)  # 2 protocols × 3 methods
