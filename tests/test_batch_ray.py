"""`acckv batch --workers N` on a local Ray cluster: same lines as the local runner, resume, worker death.

Ray is part of the test extra, so these tests run (and fail, never skip) wherever the suite runs. Each Ray
run starts a local instance sized for its workers (2 CPUs), each worker with one torch thread.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acckv_cli.batch.local import collect_items
from acckv_cli.batch.ray_workers import MAX_ATTEMPTS
from test_batch import FAST, QUESTIONS, SAMPLES, folder, full_run, invoke, questions_file, read_lines  # noqa: F401

# What may differ between two runs of the same item: how long it took.
VOLATILE = {"timings"}


@pytest.fixture(scope="module")
def ray_run(folder, questions_file, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("batch_ray") / "results.jsonl"
    result = invoke("batch", str(folder), "--questions", str(questions_file), "--out", str(out), "--workers", "2",
                    *FAST)
    assert result.exit_code == 0, result.stderr
    return out, result


def _stable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in VOLATILE}


def test_workers_write_the_local_runs_lines_once_each(ray_run, full_run):  # noqa: F811
    """Same records as the one-process run (answers, errors, kept ratios, reuse), each key exactly once."""
    out, result = ray_run
    lines = read_lines(out)
    local = {l["key"]: l for l in read_lines(full_run[0])}
    keys = [l["key"] for l in lines]
    assert len(keys) == len(set(keys)) == len(local) == 8 and set(keys) == set(local)
    for line in lines:
        assert _stable(line) == _stable(local[line["key"]]), line["key"]
    assert re.search(r"8\s*│\s*6\s*│\s*2\s*│\s*0\s*│", result.stdout), result.stdout  # items done failed skipped
    assert "built-in demo model" in result.stderr  # the workers' model notices reach the user once
    assert result.stderr.count("built-in demo model") == 1


def test_a_worker_answers_all_questions_of_a_video_from_one_decode(ray_run):
    """Whole videos go to one worker: its second question reuses decode, encoders and media prefill."""
    good = [l for l in read_lines(ray_run[0]) if l["error"] is None]
    by_video: dict[str, list[dict]] = {}
    for line in good:
        by_video.setdefault(line["video"], []).append(line)
    assert len(by_video) == 3
    for video, answers in by_video.items():
        assert [a["question"] for a in answers] == QUESTIONS, video  # in the video's own order
        assert answers[0]["reused"] == [] and answers[0]["timings"]["decode_s"] > 0
        assert set(answers[1]["reused"]) == {"decode", "encode", "media_prefill"}


def test_resume_on_workers_adds_only_the_missing_lines(ray_run, folder, questions_file, tmp_path):  # noqa: F811
    out = tmp_path / "part.jsonl"
    full = ray_run[0].read_text().splitlines(keepends=True)
    out.write_text("".join(full[:3]) + '{"id": "half a li')  # three finished lines and a cut one
    result = invoke("batch", str(folder), "--questions", str(questions_file), "--out", str(out), "--workers", "2",
                    "--resume", *FAST)
    assert result.exit_code == 0, result.stderr
    lines = read_lines(out)
    assert out.read_text().startswith("".join(full[:3]))
    assert sorted(l["key"] for l in lines) == sorted(json.loads(l)["key"] for l in full)
    rest = [json.loads(l) for l in full[3:]]  # lines arrive in completion order: some may be errors
    failed = sum(l["error"] is not None for l in rest)
    assert re.search(rf"8\s*│\s*{5 - failed}\s*│\s*{failed}\s*│\s*3\s*│", result.stdout), result.stdout


# ------------------------------------------------------------------------------------ killed workers


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below `root` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    cmdlines: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        cmdlines[int(entry)] = cmdline
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = cmdlines.get(child, "")
            todo.append(child)
    return found


def _busy_workers(root: int) -> list[int]:
    """Ray actor processes of the run below `root` that are inside `VideoWorker.run_video` right now."""
    return [pid for pid, cmd in _descendants(root).items() if cmd.startswith("ray::VideoWorker.run_video")]


def _start_batch(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "acckv_cli", "batch", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in _descendants(proc.pid):  # the run's own Ray processes, by id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"batch did not finish in {timeout} s; stderr:\n{stderr}")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four copies of two sample clips: four videos."""
    root = tmp_path_factory.mktemp("ray_clips")
    for i in range(2):
        shutil.copyfile(SAMPLES / "flute_red_circle.mp4", root / f"flute{i}.mp4")
        shutil.copyfile(SAMPLES / "clarinet_purple_triangle.mp4", root / f"clarinet{i}.mp4")
    return root


def test_killed_worker_has_its_unfinished_items_retried_exactly_once(clips, tmp_path):
    """SIGKILL one of two workers mid-video: its unanswered items run again elsewhere; none lost or doubled."""
    many = tmp_path / "many.txt"
    asked = [f"Question number {i}?" for i in range(30)]  # a video takes a while: the kill lands mid-video
    many.write_text("\n".join(asked) + "\n")
    out = tmp_path / "killed.jsonl"
    expected = {it.key for it in collect_items(str(clips), asked, "acckv", "0.5")[0]}
    assert len(expected) == 120
    proc = _start_batch([str(clips), "--questions", str(many), "--out", str(out), "--workers", "2", *FAST])
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 3:
            busy = _busy_workers(proc.pid)
            if busy:
                killed = busy[0]
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.02)
    stdout, stderr = _finish(proc, 300)
    assert killed is not None, f"no worker was killed mid-run; stderr:\n{stderr}"
    assert proc.returncode == 0, stderr
    lines = read_lines(out)
    keys = [l["key"] for l in lines]
    assert len(keys) == len(set(keys)) == len(expected) and set(keys) == expected
    assert all(l["error"] is None for l in lines), [l["error"] for l in lines if l["error"]][:3]
    assert re.search(r"worker \d failed on \S+ \(worker process died\); retrying its \d+ unfinished", stderr), stderr
    assert "1 Ray worker failure(s)" in stderr, stderr
    assert re.search(r"120\s*│\s*120\s*│\s*0\s*│\s*0\s*│", stdout), stdout


def test_a_video_that_kills_every_worker_is_recorded_as_failed(clips, tmp_path):
    """A worker dying on the same video again and again: after MAX_ATTEMPTS its items get error lines."""
    one = tmp_path / "one"
    one.mkdir()
    shutil.copyfile(clips / "flute0.mp4", one / "poison.mp4")
    many = tmp_path / "q.txt"
    many.write_text("\n".join(f"Question {i}?" for i in range(200)) + "\n")
    out = tmp_path / "poison.jsonl"
    proc = _start_batch([str(one), "--questions", str(many), "--out", str(out), "--workers", "1", *FAST])
    kills = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        for pid in _busy_workers(proc.pid):  # kill whoever answers the video, as a crashing input would
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    stdout, stderr = _finish(proc, 60)
    assert proc.returncode == 0, stderr
    assert kills >= MAX_ATTEMPTS
    lines = read_lines(out)
    assert len(lines) == len({l["key"] for l in lines}) == 200
    failed = [l for l in lines if l["error"]]
    assert failed and all(f"{MAX_ATTEMPTS} workers failed while answering this video" in l["error"] for l in failed)
    assert all(l["answer"] is None for l in failed)
    assert f"after {MAX_ATTEMPTS} failed workers" in stderr
    done = len(lines) - len(failed)
    assert re.search(rf"200\s*│\s*{done}\s*│\s*{len(failed)}\s*│\s*0\s*│", stdout), stdout


# ------------------------------------------------------------------------------------ options


@pytest.mark.parametrize("extra, words", [
    (["--workers", "0"], ["--workers", "at least 1"]),
    (["--ray-address", "auto"], ["--ray-address", "--workers"]),
    (["--gpus-per-worker", "1"], ["--gpus-per-worker", "--workers"]),
    (["--workers", "2", "--gpus-per-worker", "-1"], ["--gpus-per-worker"]),
    (["--workers", "2", "--cpus-per-worker", "0"], ["--cpus-per-worker"]),
    (["--workers", "2", "--device", "cuda"], ["--gpus-per-worker"]),
])
def test_ray_usage_errors(folder, tmp_path, extra, words):  # noqa: F811
    result = invoke("batch", str(folder), "--question", "Q?", "--out", str(tmp_path / "r.jsonl"), *extra)
    assert result.exit_code == 2, result.stderr
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and all(w in lines[0] for w in words), result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_workers_without_ray_say_how_to_install_it(folder, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is missing
    result = invoke("batch", str(folder), "--question", "Q?", "--out", str(tmp_path / "r.jsonl"), "--workers", "2")
    assert result.exit_code == 1, result.stderr
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "pip install 'acckv[ray]'" in lines[0] and "-e '.[ray]'" in lines[0], result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_more_gpus_than_the_cluster_has_is_one_line_not_a_hang(folder, tmp_path):  # noqa: F811
    result = invoke("batch", str(folder), "--question", "Q?", "--out", str(tmp_path / "r.jsonl"), "--workers", "1",
                    "--gpus-per-worker", "1000", *FAST)
    assert result.exit_code == 2, result.stderr
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "1000 GPU" in lines[0] and "--gpus-per-worker" in lines[0], result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_unreachable_ray_address_is_one_line_at_once(folder, tmp_path):  # noqa: F811
    """Ray itself would retry a dead address for minutes, logging each try."""
    with socket.socket() as closed:  # bound, never listening: connecting is refused
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
        start = time.monotonic()
        result = invoke("batch", str(folder), "--question", "Q?", "--out", str(tmp_path / "r.jsonl"), "--workers",
                        "1", "--ray-address", address)
    assert result.exit_code == 1, result.stderr
    assert time.monotonic() - start < 30
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and f"cannot connect to Ray at '{address}'" in lines[0], result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_workers_with_a_shard_csv_and_overwrite(folder, questions_file, full_run, tmp_path):  # noqa: F811
    """`--workers 1 --shard I/2 --format csv`: the shard's rows, each the local run's answer for its item; a
    second run on the same --out with the other shard and `--overwrite` leaves only that shard's rows. The two
    shards cover the input exactly once. Catches: Ray ignoring --shard (every item), --format (JSON lines in a
    .csv), or --overwrite (appending to the old file)."""
    import csv

    local = {line["key"]: line for line in read_lines(full_run[0])}
    out = tmp_path / "r.csv"
    shards = []
    for i, extra in ((0, []), (1, ["--overwrite"])):
        result = invoke("batch", str(folder), "--questions", str(questions_file), "--out", str(out), "--workers",
                        "1", "--shard", f"{i}/2", "--format", "csv", *extra, *FAST)
        assert result.exit_code == 0, result.stderr
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert rows and all(set(row) == set(rows[0]) for row in rows)
        for row in rows:
            assert row["answer"] == (local[row["key"]]["answer"] or "") and row["error"] == (local[row["key"]]["error"] or "")
        shards.append({row["key"] for row in rows})
    assert shards[0] and shards[1] and not shards[0] & shards[1] and shards[0] | shards[1] == set(local)


def test_no_worker_can_load_the_model(folder, tmp_path):  # noqa: F811
    """A --model folder that passes the driver's check (it has a config.json) but that no worker can load:
    the run stops with the loader's own one-line error and exit code, as the local run gives them, and
    writes no answer. Catches: a driver waiting forever for workers, or an error per item instead."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2_5_omni_thinker"}))
    args = ["batch", str(folder), "--question", "Q?", "--model", str(model), *FAST]
    local = invoke(*args, "--out", str(tmp_path / "local.jsonl"))
    ray = invoke(*args, "--out", str(tmp_path / "ray.jsonl"), "--workers", "1")
    assert local.exit_code == ray.exit_code == 1, (local.stderr, ray.stderr)
    local_error = [l for l in local.stderr.splitlines() if l.startswith("error:")]
    ray_error = [l for l in ray.stderr.splitlines() if l.startswith("error:")]
    assert len(local_error) == len(ray_error) == 1 and ray_error == local_error and str(model) in ray_error[0]
    written = tmp_path / "ray.jsonl"
    assert not written.exists() or written.read_text() == ""
