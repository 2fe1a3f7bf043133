"""`acckv bench` (issue #6): a smoke run at tiny sizes, and the synthetic prompt's layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from acckv_cli.bench.config import parse_sizes
from acckv_cli.bench.prompts import synthetic_prompt
from acckv_cli.bench.shapes import QWEN25_OMNI_3B, TINY
from acckv_cli.model.layout import Modality

EXACT = ("acckv", "acckv-nocal", "snapkv", "pyramidkv", "h2o", "lookm", "streamingllm", "random", "taskfocus")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "acckv_cli", "bench", "--tiny", "--sizes", "512", "--layers", "1", "--decode-steps", "2",
           "--threads", "2", "--out-json", str(out / "bench.json"), "--plot", str(out / "decode.png"),
           "--out-md", str(out / "bench.md")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), proc.stdout, out


def test_bench_json_fields_and_budgets(tiny_run):
    result, stdout, out = tiny_run
    for key in ("cpu", "usable_cpus", "torch", "torch_threads", "transformers"):
        assert key in result["machine"]
    assert result["model"]["layers"] == 1 and result["config"]["sizes"] == [512]
    (row,) = result["sizes"]
    assert sum(row["counts"].values()) == row["n"] == 512
    assert row["prefill"]["none_s"] > 0 and row["prefill"]["acckv_hook_s"] > 0
    assert row["memory"]["method"].startswith(("VmHWM", "VmRSS"))  # the measurement itself: test_peak_rss_*
    by = {(m["name"], m["budget"]): m for m in row["methods"]}
    for name in EXACT:
        for budget in (0.2, 0.1):
            m = by[(name, budget)]
            # every method's step does real work, and its overhead is relative to the hook-free prefill
            assert m["hook_s"] > 0 and m["overhead_pct"] == pytest.approx(100 * m["hook_s"] / row["prefill"]["none_s"])
            media = row["counts"]["video"] + row["counts"]["audio"]
            entries = 512 - media + round(budget * media)  # media budget + every text entry
            budget_bytes = entries * row["bytes_per_entry_per_layer"]
            assert m["kv_bytes_budget"] == budget_bytes
            # KV bytes equal the budget (AccKV too: calibration, the only step that evicts below it, is off
            # by default, and its merge keeps the entry count)
            assert abs(m["kv_bytes"] / budget_bytes - 1) <= 0.01, (name, budget, m["kv_bytes"], budget_bytes)
            assert m["budget_check"] is True and m["calibration_evicted"] == 0
    decode = {d["setting"]: d for d in row["decode"]}
    assert set(decode) == {"full", "full·fw", "20%", "10%"}
    media = row["counts"]["video"] + row["counts"]["audio"]
    assert decode["full"]["entries_per_layer"] == 512
    assert decode["20%"]["entries_per_layer"] == 512 - media + round(0.2 * media)
    for d in decode.values():
        assert d["ms_per_token"] > 0 and d["steps"] == 2
        assert {"attention_core_ms", "mlp_ms", "lm_head_ms"} <= set(d["profile"])
    kv_target = next(t for t in result["targets"] if t["target"].startswith("KV bytes"))
    assert kv_target["pass"] is True
    assert "targets" in stdout and "decode" in stdout
    assert (out / "decode.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| target | measured | result |" in (out / "bench.md").read_text()


@pytest.mark.parametrize("n", [2048, 8192, 16384, 32768, 5000])
def test_synthetic_prompt_has_the_real_modality_mix(n):
    prompt = synthetic_prompt(n, QWEN25_OMNI_3B)
    layout = prompt.layout
    counts = layout.counts()
    assert len(layout) == n and prompt.input_ids.shape == (1, n) and prompt.position_ids.shape == (4, 1, n)
    assert 0.86 <= counts["video"] / n <= 0.94 and 0.06 <= counts["audio"] / n <= 0.10
    assert 0.0 < layout.duration_s and layout.seconds_per_chunk == 2.0
    # Audio tokens advance mRoPE by one per 40 ms; video grid g sits at t = origin + 25·g (fps 2).
    audio = layout.mask(Modality.AUDIO)
    assert torch.allclose(layout.time_s[audio][:50], torch.arange(50) * 0.04, atol=1e-5)
    video_t = layout.time_s[layout.mask(Modality.VIDEO)].unique()
    assert torch.allclose(video_t[:4], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    # The prompt ends with the question and the assistant header; text positions continue after the media.
    assert layout.modality[-1] == int(Modality.TEXT) and layout.post_media_text_mask().sum() >= 8
    pos = prompt.position_ids[1:, 0]
    assert int(prompt.next_position[1]) == int(pos.max()) + 1


def test_cli_bench_command_runs(tmp_path):
    """`acckv bench` passes its options through to the same run (a short one: two methods, one budget)."""
    from typer.testing import CliRunner
    from acckv_cli.cli.app import app
    path = tmp_path / "b.json"
    result = CliRunner().invoke(app, ["bench", "--tiny", "--sizes", "512", "--layers", "1", "--decode-steps", "1",
                                      "--methods", "acckv,snapkv", "--budgets", "0.2", "--repeat", "1",
                                      "--out-json", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    assert data["config"]["methods"] == ["acckv", "snapkv"] and data["config"]["budgets"] == [0.2]
    assert {d["setting"] for d in data["sizes"][0]["decode"]} == {"full", "full·fw", "20%"}
    bad = CliRunner().invoke(app, ["bench", "--sizes", "10"])
    assert bad.exit_code == 2


def test_peak_rss_sees_a_freed_allocation():
    """Catches: a peak that reports the RSS at the end of the block (the 64 MB are freed by then), a
    high-water mark never reset, or kB read as MB (the bench's memory columns rest on this)."""
    import numpy as np
    from acckv_cli.bench.memory import PeakRSS

    with PeakRSS() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, every page touched
        del block
    assert 60 <= mem.peak_mb <= 200, mem.peak_mb
    with PeakRSS() as idle:
        pass
    assert idle.peak_mb < 32, idle.peak_mb  # the earlier 64 MB do not count: the mark was reset


def test_parse_sizes_and_cli_help():
    assert parse_sizes("2k, 8k,16384") == (2048, 8192, 16384)
    with pytest.raises(ValueError):
        parse_sizes("10")
    from typer.testing import CliRunner
    from acckv_cli.cli.app import app
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0 and "--sizes" in result.output and "--tiny" not in result.output
    assert TINY.head_dim == 16 and QWEN25_OMNI_3B.head_dim == 128
