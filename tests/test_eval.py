"""`acckv eval`: scoring, method specs, resumable results, summaries, fidelity mode and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acckv_cli.evaluation import evaluate as ev
from acckv_cli.evaluation.summary import plot_summary, summarise, write_summary
from acckv_cli.cli.app import app
from acckv_cli.model.layout import Modality

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_answer_matching():
    assert ev.answer_matches("A flute.", "flute") and ev.answer_matches("Flute", "flute")
    assert not ev.answer_matches("flute or violin", "flute") and not ev.answer_matches("", "flute")
    assert ev.answer_starts_with("green blue", "green") and ev.answer_starts_with("The flute.", "flute")
    assert not ev.answer_starts_with("greenblue", "green") and not ev.answer_starts_with("", "green")


def test_method_specs():
    assert ev.parse_method_spec("acckv:tau=0.9,budget_split=joint") == ("acckv", {"tau": 0.9, "budget_split": "joint"})
    assert ev.parse_method_spec("acckv-no-AF") == ("acckv", {"focusing": False})
    from acckv_cli.errors import UsageError
    with pytest.raises(UsageError, match="unknown method"):
        ev.parse_method_spec("nope")
    with pytest.raises(UsageError, match="no parameter 'nonsense'"):
        ev.parse_method_spec("acckv:nonsense=1")
    with pytest.raises(UsageError, match="must be float"):
        ev.parse_method_spec("acckv:tau=high")


def manifest(tmp_path) -> Path:
    rows = [{"id": "a", "video": str(SAMPLES / "flute_red_circle.mp4"), "question": "What instrument plays?",
             "answer": "flute", "family": "audio"},
            {"id": "b", "video": "missing.mp4", "question": "What colour is the circle?", "answer": "red",
             "family": "video"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_run_eval_rows_resume_and_errors(tiny_lm, tmp_path):
    items = ev.read_manifest(manifest(tmp_path))
    out = tmp_path / "out"
    rows = ev.run_eval(tiny_lm, items, ["full", "snapkv"], ["0.6"], out)
    assert len(rows) == 8  # 2 items × 2 protocols × 2 methods
    bad = [r for r in rows if r["id"] == "b"]
    assert all("error" in r and "not found" in r["error"] for r in bad)
    good = [r for r in rows if r["id"] == "a"]
    assert {r["protocol"] for r in good} == {"query-aware", "context"}
    assert all({"answer", "first_word_correct", "exact_correct", "first_token_agrees", "first_token_kl", "kv_kept",
                "media_kept", "model", "seed", "code_version"} <= set(r) for r in good)
    # a killed run leaves a partial line: resume drops it and redoes only what is missing
    text = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(text[:2]) + "\n" + text[2][:20])
    rows = ev.run_eval(tiny_lm, items, ["full", "snapkv", "random"], ["0.6"], out, resume=True)
    keys = [ev.result_key(r["id"], r["protocol"], r["method"], r["budget"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12
    summary = summarise(rows)
    full = next(e for e in summary if e["method"] == "full" and e["protocol"] == "context")
    assert full["n"] == 2 and full["errors"] == 1 and full["kv_kept"] == 1.0 and full["media_kept"] == 1.0
    write_summary(summary, out)
    plot_summary(summary, out / "accuracy.png")
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    header = (out / "summary.csv").read_text().splitlines()[0]
    assert "protocol" in header and "first_word" in header and "kl" in header
    assert "| protocol | method |" in (out / "summary.md").read_text()


def test_first_token_kl():
    import torch
    p, q = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 0.0])
    assert ev.first_token_kl(p, p) == 0.0
    lp, lq = p.log_softmax(-1), q.log_softmax(-1)
    assert ev.first_token_kl(p, q) == pytest.approx(float((lp.exp() * (lp - lq)).sum()))


@pytest.fixture(scope="module")
def validation_rows(tmp_path_factory):
    """Six SynthAVQA validation clips on the demo model: full vs random eviction at tiny media budgets."""
    from acckv_cli.model.load import load_model
    data = tmp_path_factory.mktemp("synthavqa")
    items = ev.synthavqa_items("validation", 6, data)
    rows = ev.run_eval(load_model(), items, ["full", "random", "acckv"], ["0.02", "0.005"], data / "out",
                       ("query-aware", "context", "prefill"))
    return {(e["protocol"], e["method"], e["budget"]): e for e in summarise(rows)}


def test_yardstick_falls_when_almost_all_media_is_evicted(validation_rows):
    """Under `context`, answers must depend on what the cache kept. On core clips (one large shape, one long
    tone per answer) the v2 demo model still answers 83 % of the questions from 2 % of the media — a few random
    tokens of a redundant event suffice — so 2 % must only cost something, while 0.5 % must lose most audio
    answers, half the video answers and half of all answers (measured: audio 100 → 17 %, video 100 → 50 %,
    all 94 → 33 %). The sparse suite is where small budgets bite (tests/test_eval_suites.py, README)."""
    full = validation_rows[("context", "full", 1.0)]
    two = validation_rows[("context", "random", 0.02)]
    half = validation_rows[("context", "random", 0.005)]
    assert full["audio"] == 1.0 and full["video"] == 1.0
    assert two["media_kept"] < 0.025 and half["media_kept"] < 0.01
    assert two["first_word"] < full["first_word"]
    assert half["audio"] <= full["audio"] - 0.5 and half["video"] <= full["video"] - 0.3
    assert half["first_word"] <= full["first_word"] - 0.5


@pytest.mark.parametrize("protocol", ["query-aware", "context", "prefill"])
def test_full_cache_kl_is_exactly_zero_and_compression_is_visible(validation_rows, protocol):
    full = validation_rows[(protocol, "full", 1.0)]
    assert full["kl"] == 0.0 and full["agreement"] == 1.0  # a second, separate full-cache run
    for method in ("random", "acckv"):
        compressed = validation_rows[(protocol, method, 0.02)]
        if protocol == "prefill":  # the whole prompt prefilled before compressing: the first token is blind
            assert compressed["kl"] == 0.0 and compressed["agreement"] == 1.0
        else:
            assert compressed["kl"] > 0.1 and compressed["agreement"] < 1.0


def test_eval_cli_on_manifest(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--manifest", str(manifest(tmp_path)), "-m", "full",
                                      "-m", "acckv:tau=0.9,budget_split=joint", "--budgets", "0.6",
                                      "--protocols", "context", "--out-dir", str(tmp_path / "o"), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert {e["method"] for e in summary} == {"full", "acckv:tau=0.9,budget_split=joint"}
    assert {e["protocol"] for e in summary} == {"context"}
    assert (tmp_path / "o" / "accuracy.png").exists() and (tmp_path / "o" / "summary.csv").exists()
    # the same rule as batch: finished results are never replaced without --overwrite (or continued: --resume)
    again = CliRunner().invoke(app, ["eval", "--manifest", str(manifest(tmp_path)), "-m", "full", "--budgets", "0.6",
                                     "--protocols", "context", "--out-dir", str(tmp_path / "o")])
    assert again.exit_code == 2 and "exists" in again.stderr and "--overwrite" in again.stderr
    rows_before = (tmp_path / "o" / "results.jsonl").read_text()
    resumed = CliRunner().invoke(app, ["eval", "--manifest", str(manifest(tmp_path)), "-m", "full", "--budgets", "0.6",
                                       "--protocols", "context", "--out-dir", str(tmp_path / "o"), "--resume"])
    assert resumed.exit_code == 0 and (tmp_path / "o" / "results.jsonl").read_text() == rows_before


@pytest.mark.parametrize("args, words", [
    (["--method", "nope"], "unknown method"),
    (["-m", "acckv:tau=x"], "must be float"),
    (["-m", "acckv:tau"], "key=value"),
    (["--clips", "0"], "--clips"),
    (["-n", "abc"], "--clips"),
    (["--max-new-tokens", "abc"], "--max-new-tokens"),
    (["--device", "tpu"], "--device"),
    (["--resume", "--overwrite"], "exclude"),
    (["--bogus"], "No such option"),
    (["--budgets", "x"], "budget"),
    (["--protocols", "later"], "unknown protocol"),
    (["--split", "train"], "--split"),
    (["--manifest", "missing.jsonl"], "manifest not found"),
])
def test_eval_cli_usage_errors(args, words, tmp_path):
    result = CliRunner().invoke(app, ["eval", "--out-dir", str(tmp_path), *args], catch_exceptions=False)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert words in lines[0] and "Traceback" not in result.stderr


# --- evidence: manifests, the oracle's spans per protocol, rows ---------------------------------------------

def test_manifest_evidence_one_or_several_spans(tmp_path):
    rows = [{"video": "a.mp4", "question": "q1", "evidence": [1, 2]},
            {"video": "a.mp4", "question": "q2", "evidence": [[1, 2], [3.5, 4]]},
            {"video": "a.mp4", "question": "q3"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [i.evidence for i in ev.read_manifest(path)] == [((1.0, 2.0),), ((1.0, 2.0), (3.5, 4.0)), ()]
    csv = tmp_path / "m.csv"
    csv.write_text('video,question,evidence\na.mp4,q1,"[[0, 1], [2, 3]]"\na.mp4,q2,\n')
    assert [i.evidence for i in ev.read_manifest(csv)] == [((0.0, 1.0), (2.0, 3.0)), ()]
    # what generators return: core SynthAVQA one (start, end) pair or None, the new suites lists of spans
    assert ev.Item("i", "a.mp4", "q", evidence=(0.5, 1.5)).evidence == ((0.5, 1.5),)
    assert ev.Item("i", "a.mp4", "q", evidence=[[0, 1], [2, 3]]).evidence == ((0.0, 1.0), (2.0, 3.0))
    assert ev.Item("i", "a.mp4", "q", evidence=None).evidence == ()
    from acckv_cli.errors import UsageError
    path.write_text(json.dumps({"video": "a.mp4", "question": "q", "evidence": [[2, 1]]}) + "\n")
    with pytest.raises(UsageError, match=r"m.jsonl:1: \"evidence\""):
        ev.read_manifest(path)


class RecordingSession:
    """Stands in for a ClipSession: records the evidence of every method it compresses or answers with."""

    def __init__(self):
        self.compressed, self.asked = [], []

    def media_cache(self, method=None, budget=None, needs=None):
        self.compressed.append(method.evidence)
        return "compressed media"

    def answer(self, question, media_cache, protocol, method, budget, max_new_tokens):
        self.asked.append((question, method.evidence))
        return question


def test_oracle_gets_each_question_its_spans_or_the_clip_union():
    from acckv_cli.methods.evidence import union
    items = [ev.Item("a", "v.mp4", "q1", evidence=((1.0, 2.0),)),
             ev.Item("b", "v.mp4", "q2", evidence=((3.0, 4.0), (0.5, 1.5)))]
    config = ev.configs_for(["oracle"], ["0.5"])[0]
    clip = union(*(i.evidence for i in items))
    session = RecordingSession()  # context: one cache for every question, compressed keeping the union
    ev._asker(session, "context", None, 1, clip)(items[1:], config)
    assert session.compressed == [((0.5, 2.0), (3.0, 4.0))] and session.asked == [("q2", clip)]
    session = RecordingSession()  # query-aware: every question compresses its own copy with its own spans
    ev._asker(session, "query-aware", "full media cache", 1, clip)(items, config)
    assert session.compressed == [] and session.asked == [("q1", items[0].evidence), ("q2", items[1].evidence)]


def test_run_eval_oracle_keeps_the_evidence_and_rows_record_it(tiny_lm, tmp_path):
    """Two questions of one 4-s clip with evidence in different frame pairs: under both protocols the oracle
    keeps all of each question's evidence (under `context` through the union); uniform at the same budget
    does not, so `evidence_kept` can tell them apart."""
    clip = str(SAMPLES / "flute_red_circle.mp4")
    items = [ev.Item("a", clip, "What instrument plays?", "flute", "audio", ((0.2, 0.6),)),
             ev.Item("b", clip, "What colour is the circle?", "red", "video", ((2.3, 2.7),))]
    rows = ev.run_eval(tiny_lm, items, ["full", "oracle", "uniform"], ["0.6"], tmp_path / "out", max_new_tokens=1)
    assert len(rows) == 12 and not any("error" in r for r in rows)
    for row in rows:
        assert row["evidence"] == [list(span) for span in next(i for i in items if i.id == row["id"]).evidence]
        if row["method"] != "full":
            assert 0.55 < row["media_kept"] < 0.65
    assert all(r["evidence_kept"] == 1.0 for r in rows if r["method"] in ("full", "oracle"))
    assert all(r["evidence_kept"] < 0.9 for r in rows if r["method"] == "uniform")
    summary = {(e["protocol"], e["method"]): e for e in summarise(rows)}
    assert summary[("context", "oracle")]["evidence_kept"] == 1.0


def test_eval_cli_refuses_oracle_without_evidence_before_the_model_loads(tmp_path):
    """`python -m acckv_cli eval -m oracle` on a manifest without evidence: one line, exit 2, and no model is
    loaded (the model named is in no cache, so loading it first would be a different error; a hub id, since a
    missing folder is itself refused before anything else)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "acckv_cli", "eval", "--manifest", str(manifest(tmp_path)),
                           "-m", "full", "-m", "oracle", "--model", "no-such-org/no-such-model",
                           "--out-dir", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "oracle needs each question's evidence" in lines[0] and "no-such-model" not in proc.stderr
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_evidence_kept_and_kept_time_are_counts_of_the_kept_entries(tiny_lm, tmp_path, monkeypatch):
    """`evidence_kept` and `kept_time` of the rows `eval` writes, against a count by hand from the kept sets
    (per layer and per KV head: SnapKV keeps a set per head) and the token times, with the token intervals
    written here: a video token covers its frame pair (1 s at 2 fps), an audio token 40 ms; a token is inside
    the evidence when its interval overlaps it. kept_time = mean time of the kept media over the last media
    token's time. Catches: heads or layers dropped from the mean, a video token read as an instant (no
    video inside a span that starts mid-pair), evidence of another question, kept_time over text entries."""
    import torch
    from acckv_cli.methods.base import kept_mask

    captured = []
    original = ev.compare

    def spy(answer, reference, item):
        row = original(answer, reference, item)
        captured.append((answer, item, row))
        return row

    monkeypatch.setattr(ev, "compare", spy)
    span = (1.31, 2.19)  # starts inside frame pair 1 and ends inside pair 2
    rows = [{"id": "a", "video": str(SAMPLES / "flute_red_circle.mp4"), "question": "What instrument plays?",
             "answer": "flute", "family": "audio", "evidence": [list(span)]}]
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    written = ev.run_eval(tiny_lm, ev.read_manifest(path), ["snapkv:window_size=16", "random"], ["0.25"],
                          tmp_path / "out", ("context", "query-aware"))
    assert len(captured) == 4 and all("evidence_kept" in r for r in written)
    for answer, item, row in captured:
        layout = answer.layout
        t = layout.time_s.tolist()
        kinds = layout.modality.tolist()
        length = {int(Modality.VIDEO): 1.0, int(Modality.AUDIO): 0.04}
        media = [j for j, k in enumerate(kinds) if k in length]
        inside = [j for j in media if t[j] < span[1] and t[j] + length[kinds[j]] > span[0]]
        assert any(kinds[j] == int(Modality.VIDEO) for j in inside)
        kept_inside = kept_total = time_sum = 0.0
        sets = 0
        for keep in answer.kept.values():
            for head in kept_mask(keep, len(layout)):
                sets += 1
                kept_inside += sum(bool(head[j]) for j in inside)
                kept_media = [j for j in media if head[j]]
                kept_total += len(kept_media)
                time_sum += sum(t[j] for j in kept_media)
        assert row["evidence_kept"] == pytest.approx(kept_inside / (sets * len(inside)), abs=1e-4)
        assert row["kept_time"] == pytest.approx(time_sum / kept_total / max(t[j] for j in media), abs=1e-4)
        assert 0 < row["evidence_kept"] < 1
    written_rows = {(r["protocol"], r["method"]): r for r in written if r["method"] != "full"}
    for answer, item, row in captured:
        assert any(w["evidence_kept"] == row["evidence_kept"] for w in written_rows.values())
