"""Committed results: the summaries behind the README's accuracy tables, recounted from their raw rows.

`results/*/results.jsonl(.gz)` hold one row per (question, protocol, method, budget) with the model's answer
and the expected one; `summary.json` is what `acckv eval` computed from them. Here the accuracy of every
summary row (overall first word and per question family) is counted again from the answer texts with a
scoring rule written in the test, and compared with both `summarise()` and the committed summary.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from acckv_cli.evaluation.summary import budget_number, summarise

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = {"a", "an", "the"}
# runs whose raw rows are committed beside their summary
RAW = ("v2-compare-test", "v2-calibration-sparse-test", "eval-test", "eval-long-test", "v2-compare-test-r4/context",
       "v2-compare-test-r4/query-aware", "v2-long-stream-test", "validation-round-5/grid", "validation-round-5/contrast",
       "validation-round-5/qa-core", "validation-round-6/grid", "validation-round-6/qa", "v2e-test/context",
       "v2e-test/query-aware", "v2e-test/long-stream", "validation-round-7/v2e", "validation-round-7/v2e-b",
       "validation-round-7/seed1e", "validation-round-7/seed1e-b", "r7-test/v2e/context", "r7-test/v2e/query-aware",
       "r7-test/seed1e/context", "r7-test/seed1e/query-aware", "v2e-test/full/core", "v2e-test/full/sparse", "v2e-test/full/long",
       "seed1-compare-test/context", "seed1-compare-test/query-aware", "seed1-compare-test/long-stream",
       "r7-test/v2e/long-stream", "validation-round-8/v2f", "validation-round-8/v2f-kurtosis",
       "validation-round-8/seed1f-kurtosis", "v2f-test/full/core", "v2f-test/full/sparse", "v2f-test/full/long",
       "r8-test/v2f/context", "r8-test/v2f/query-aware", "r8-test/v2f/long-stream", "r8-test/seed1f/context",
       "r8-test/seed1f/query-aware", "r8-test-wide/v2f", "validation-round-9/diversity",
       "validation-round-9/long-stream", "validation-round-9/question-weight",
       "validation-round-9/snapkv-ideas", "validation-round-9/long-stream-pooling", "r9-test/v2f", "r9-test/long-stream",
       "validation-round-10/skeleton-025", "validation-round-10/last-rows", "validation-round-10/no-bins",
       "r9-seed-check/v2f", "r9-seed-check/seed1f", "validation-round-11/seed1f",
       "r9-test/seed1f", "validation-round-12/seed1f-core",
       "validation-round-12/seed1f-sparse", "validation-round-12/v2f-core", "validation-round-12/v2f-sparse",
       "validation-round-12/seed1f-core-2", "validation-round-12/seed1f-sparse-2", "validation-round-12/v2f-core-2",
       "validation-round-12/v2f-sparse-2", "validation-round-12/seed1f-core-3", "validation-round-12/seed1f-sparse-3",
       "validation-round-12/v2f-core-3", "validation-round-12/v2f-sparse-3", "validation-round-12/seed1f-core-4",
       "validation-round-12/seed1f-sparse-4", "validation-round-12/v2f-core-4", "validation-round-12/v2f-sparse-4")


def read_rows(run: str) -> list[dict]:
    folder = ROOT / "results" / run
    path = folder / "results.jsonl.gz"
    opener = gzip.open if path.exists() else open
    path = path if path.exists() else folder / "results.jsonl"
    with opener(path, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def first_word_right(answer: str, expected: str) -> bool:
    """The test's own rule: the answer's first words (lower case, punctuation and articles dropped) are the
    expected answer's words ("The flute." is right for "flute"; "flutes" and "circlene" are not)."""
    def words(text):
        return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w and w not in ARTICLES]
    want = words(expected)
    return bool(want) and words(answer)[:len(want)] == want


def key(row: dict) -> tuple:
    return row.get("suite"), row["protocol"], row["method"], float(budget_number(row["budget"]))


@pytest.mark.parametrize("run", RAW)
def test_summary_accuracy_is_a_count_of_the_committed_answers(run):
    """For every (suite, protocol, method, budget) of the run: first-word accuracy overall and per family,
    counted from the answer texts, equal `summarise()` on the rows and the committed summary.json (to its 4
    decimals). Catches: a summary averaging over the wrong group (families mixed, budgets merged), errors
    counted as wrong or as right, a stored first_word_correct that disagrees with the answer text, or a
    summary.json written by other code than the rows beside it."""
    rows = read_rows(run)
    free = [r for r in rows if "error" not in r and "choice_correct" not in r]
    assert free
    right: dict[tuple, list[bool]] = defaultdict(list)
    for row in free:
        ok = first_word_right(row["answer"], row["expected"])
        assert ok == bool(row["first_word_correct"]), (row["answer"], row["expected"])
        right[key(row)].append(ok)
        right[key(row) + (row["family"],)].append(ok)
    computed = {key(e): e for e in summarise(rows)}
    committed = {key(e): e for e in json.loads((ROOT / "results" / run / "summary.json").read_text())}
    assert set(computed) == set(committed) == {k for k in right if len(k) == 4}
    for k, entry in committed.items():
        count = right[k]
        assert entry["n"] == len([r for r in rows if key(r) == k])
        assert entry["first_word"] == pytest.approx(sum(count) / len(count), abs=5e-5), k
        assert computed[k]["first_word"] == pytest.approx(sum(count) / len(count), abs=5e-5), k
        families = {f[4] for f in right if f[:4] == k and len(f) == 5}
        for family in families:
            share = sum(right[k + (family,)]) / len(right[k + (family,)])
            assert entry[family] == pytest.approx(share, abs=5e-5), (k, family)
            assert computed[k][family] == pytest.approx(share, abs=5e-5), (k, family)
        for field in ("evidence_kept", "kept_time", "agreement", "kl"):  # the other columns: the rows' mean
            values = [float(r[field]) for r in rows if key(r) == k and r.get(field) is not None and "error" not in r]
            if values:
                assert entry[field] == pytest.approx(sum(values) / len(values), abs=5e-5), (k, field)


# --- the README's tables name their committed output, and hold its numbers ----------------------------------

README = ROOT / "README.md"


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(text: str):
    """Every Markdown table of `text`, indented ones (in a list item) included: (header cells, rows of cells, the
    `Output:` paragraph within 3 lines after, its line breaks and indentation folded to single spaces)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\|[-:| ]+\|", lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            start = next((k for k in range(j, min(j + 4, len(lines)))
                          if lines[k].lstrip().startswith("Output:")), None)
            output = None
            if start is not None:
                end = start
                while end < len(lines) and lines[end].strip():
                    end += 1
                output = " ".join(" ".join(lines[start:end]).split())
            yield cells(lines[i]), [cells(line) for line in lines[i + 2:j]], output
            i = j
        else:
            i += 1


def is_measurement(cell: str) -> bool:
    return bool(re.search(r"\d", cell)) and re.fullmatch(r"[\d.,×%sGMBk →()/-]+", cell) is not None


def shown(text: str, value: float) -> bool:
    """`text` (a number as printed, e.g. "94.4", "0.207", "1,200") is `value` rounded to its decimals."""
    text = text.replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value) <= 0.5 * 10 ** -decimals + 1e-9


def named_outputs(output: str) -> tuple[list[Path], str]:
    paths = [ROOT / p for p in re.findall(r"`((?:results|benchmarks)/[^`]+)`", output)]
    commit = re.search(r"(?:commit|code) `([0-9a-f]{7,40})`", output)
    assert paths and commit, output
    return paths, commit.group(1)


def git_has(commit: str) -> bool:
    import subprocess

    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True).returncode == 0


PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# tables whose digits are no run's measurements: (page, first header) -> why
NOT_FROM_AN_OUTPUT = {
    ("evaluation.md", "suite"): "the suites' specification (clip lengths)",
    ("qwen3-omni-notes.md", "Field / method"): "the adapter's fields (patch sizes, layer counts)",
    ("qwen3-omni-notes.md", "Audio"): "token counts that tests/test_qwen3_probe.py::test_audio_token_rate asserts",
}
# tables (or parts of one) that say "none committed": docs/demo-model.md's probes and its samples column,
# docs/index-once.md's runs 1-3, docs/qwen3-omni-notes.md's q_norm probe
NONE_COMMITTED = 4


def has_measurements(header: list[str], rows: list[list[str]]) -> bool:
    """A table of measurements: a numeric cell past the first column (bold and ranges too), or a "measured" column."""
    return (any(is_measurement(c.replace("**", "").replace("–", "-")) for row in rows for c in row[1:])
            or any("measured" in h for h in header))


def output_refs(output: str) -> tuple[list[str], list[str]]:
    """The repository paths (globs allowed) and the commits an `Output:` paragraph names."""
    paths = re.findall(r"`((?:results|benchmarks|acckv_cli)/[^`\s]+)`", output)
    return paths, re.findall(r"(?:commit|code) `([0-9a-f]{7,40})`", output)


def in_commit(commit: str, path: str) -> bool:
    import subprocess

    return subprocess.run(["git", "cat-file", "-e", f"{commit}:{path}"], cwd=ROOT, capture_output=True).returncode == 0


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_table_of_measurements_names_its_output_and_commit(page):
    """Each table with measured numbers, in the README and every docs page, is followed by `Output: <committed
    file>, commit|code <hash>` (or says "none committed — <why>"); every named file exists (in the tree, or at
    the named commit for one kept in history) and every named commit is in the history. Catches: a table added
    or re-measured without saying where its numbers live, an output renamed or deleted, a mistyped hash."""
    measured = 0
    for header, rows, output in tables(page.read_text()):
        if (page.name, header[0]) in NOT_FROM_AN_OUTPUT or not has_measurements(header, rows):
            continue
        measured += 1
        assert output, f"{page.name}: table {header} names no output"
        if output.startswith("Output: none committed"):
            assert re.search(r"none committed — \S", output), output
            continue
        paths, commits = output_refs(output)
        assert paths and commits, output
        for commit in commits:
            assert git_has(commit), (page.name, commit)
        for path in paths:
            here = list(ROOT.glob(path.rstrip("/"))) if "*" in path else (ROOT / path).exists()
            assert here or any(in_commit(c, path) for c in commits), (page.name, path)
    if page == README:
        assert measured >= 2


def test_tables_without_a_committed_output_stay_few():
    """"none committed" (a table, or part of one, whose numbers no committed output holds) is counted over the
    README and docs, each with its reason, and capped at the number left when the rule came in. Catches: a new
    table of numbers read from an uncommitted run."""
    left = [output for page in PAGES for _, _, output in tables(page.read_text())
            if output and "none committed" in output]
    assert all(re.search(r"none committed — \S", output) for output in left), left
    assert sum(output.count("none committed") for output in left) <= NONE_COMMITTED


def test_tables_exempt_from_naming_an_output_are_what_the_exemption_says():
    """Every exempt table still exists (a stale exemption could hide a new table under its header), and the
    Qwen3-Omni audio-token table is the probe test's parameters row by row. Catches: an exemption outliving
    its table; the doc's token counts drifting from what the test asserts."""
    for page, first in NOT_FROM_AN_OUTPUT:
        assert any(h[0] == first for h, _, _ in tables((ROOT / "docs" / page).read_text())), (page, first)
    (_, rows, _), = [t for t in tables((ROOT / "docs" / "qwen3-omni-notes.md").read_text()) if t[0][0] == "Audio"]
    probe = (ROOT / "tests" / "test_qwen3_probe.py").read_text()
    params = re.search(r'parametrize\("seconds,mel,tokens", (\[.*?\])\)\ndef test_audio_token_rate', probe).group(1)
    expected = [tuple(float(x) for x in group) for group in re.findall(r"\(([\d.]+), (\d+), (\d+)\)", params)]
    shown_rows = [tuple(float(c.removesuffix(" s").replace(",", "")) for c in r) for r in rows]
    assert shown_rows == expected


def readme_tables(first_header: str):
    found = [(header, rows, output) for header, rows, output in tables(README.read_text())
             if header[0] == first_header and output]
    assert found, f"no README table starting with {first_header!r}"
    return found


def readme_table(first_header: str):
    return readme_tables(first_header)[0]


def cell_field(column: str) -> tuple[str, float | None, str, int]:
    """(suite, budget, summary field, scale) a results-table column shows: "core 10 %" is first-word accuracy
    at 10 %, "sparse KL at 5 %" the KL, "sparse evidence kept at 5 %" the evidence kept (in %)."""
    suite, percent = re.search(r"(core|sparse)\b.*?(\d+) %", column).groups()
    field, scale = ("kl", 1) if "KL" in column else ("evidence_kept", 100) if "evidence" in column else ("first_word", 100)
    return suite, int(percent) / 100, field, scale


def test_readme_results_table_holds_its_outputs_numbers():
    """Every cell of the results tables (one per protocol) is the named summary's value (first-word accuracy,
    KL, or evidence kept), and the named code is the rows' code_version."""
    checked = 0
    for header, rows, output in readme_tables("method"):
        (path, *_), commit = named_outputs(output)
        summary = {(e.get("suite"), e["method"], float(budget_number(e["budget"]))): e
                   for e in json.loads(path.read_text())}
        run = str(path.parent.relative_to(ROOT / "results"))
        assert {r["code_version"].split("+")[-1] for r in read_rows(run)} == {commit}
        for row in rows:
            method = row[0].strip("`")
            for column, cell in zip(header[1:], row[1:]):
                suite, budget, field, scale = cell_field(column)
                entry = summary[(suite, method, 1.0 if method == "full" else budget)]
                assert shown(cell, scale * entry[field]), (method, column, cell, entry[field])
                checked += 1
    assert checked >= 80
    context = next(output for header, rows, output in readme_tables("method") if "/context/" in output)
    (path, *_), _ = named_outputs(context)  # the calibration is the context table's run
    summary = {(e.get("suite"), e["method"], float(budget_number(e["budget"]))): e for e in json.loads(path.read_text())}
    text = " ".join(README.read_text().split())  # the calibration sentence: each method's share of full's accuracy
    calibration = re.search(r"on \*\*sparse\*\*, random keeps ([\d.]+) % .*? at 10 % and ([\d.]+) % at 5 %, the "
                            r"oracle ([\d.]+) % and ([\d.]+) %.*?on \*\*core\*\*, random keeps ([\d.]+) % and "
                            r"([\d.]+) %", text, re.S)
    assert calibration, "calibration sentence not found"
    expected = [("sparse", "random", 0.1), ("sparse", "random", 0.05), ("sparse", "oracle", 0.1),
                ("sparse", "oracle", 0.05), ("core", "random", 0.1), ("core", "random", 0.05)]
    for text_value, (suite, method, budget) in zip(calibration.groups(), expected):
        share = summary[(suite, method, budget)]["first_word"] / summary[(suite, "full", 1.0)]["first_word"]
        assert shown(text_value, 100 * share), (suite, method, budget, text_value, share)


def test_readme_30_clip_table_holds_its_outputs_numbers():
    """The 30-clip test table: each "a / b" cell is first-word accuracy at 10 / 5 % (full: one number) for its
    suite and protocol, from the named summary, and the named code is its rows' code_version."""
    header, rows, output = readme_table("method (30 clips)")
    (path, *_), commit = named_outputs(output)
    summary = {(e["suite"], e["protocol"], e["method"], float(budget_number(e["budget"]))): e
               for e in json.loads(path.read_text())}
    assert {r["code_version"].split("+")[-1] for r in read_rows(str(path.parent.relative_to(ROOT / "results")))} == {commit}
    checked = 0
    for row in rows:
        method = row[0].strip("`")
        for column, cell in zip(header[1:], row[1:]):
            suite, protocol = re.fullmatch(r"(core|sparse) `([a-z-]+)`", column).groups()
            budgets = (1.0,) if method == "full" else (0.1, 0.05)
            for value, budget in zip(cell.split(" / "), budgets, strict=True):
                entry = summary[(suite, protocol, method, budget)]
                assert shown(value, 100 * entry["first_word"]), (method, column, budget, value)
                checked += 1
    assert checked >= 50


def test_acckv_defaults_long_stream_table_holds_its_outputs_numbers():
    """docs/acckv-defaults.md, round 9's long clips streamed: every cell (first word, agreement, KL, evidence kept,
    kept time) is the named summary's row for that method."""
    (header, rows, output), = doc_tables("acckv-defaults.md", "method (long, `stream`, 1,024 media tokens)")
    (path,), _ = named_outputs(output)
    summary = {e["method"]: e for e in json.loads(path.read_text())}
    assert len(rows) == len(summary) >= 6
    scales = {"first word": ("first_word", 100), "agreement": ("agreement", 100), "KL": ("kl", 1),
              "evidence kept": ("evidence_kept", 100), "kept time": ("kept_time", 1)}
    for row in rows:
        entry = summary[row[0].strip("`")]
        for column, cell in zip(header[1:], row[1:], strict=True):
            field, scale = scales[column]
            assert shown(cell, scale * entry[field]), (row[0], column, cell)


def test_acckv_defaults_question_weight_table_holds_its_outputs_numbers():
    """docs/acckv-defaults.md, round 9's query-aware table: accuracy and KL at 10 / 5 % per suite, evidence kept at
    5 % and the mean of the four KL cells, each from the named summary."""
    (header, rows, output), = doc_tables("acckv-defaults.md", "method (query-aware, 30 clips)")
    (path, oracle_run), _ = named_outputs(output)  # the oracle row: round 8's run on the same clips
    assert {e["protocol"] for e in json.loads(path.read_text())} == {"query-aware"} and len(rows) >= 7
    entries = json.loads(path.read_text()) + [e for e in json.loads(oracle_run.read_text())
                                               if e["method"] == "oracle" and e["protocol"] == "query-aware"]
    summary = {(e["suite"], e["method"], float(budget_number(e["budget"]))): e for e in entries}
    for row in rows:
        method = row[0].strip("`")
        budgets = (1.0, 1.0) if method == "full" else (0.1, 0.05)
        kls = []
        for column, cell in zip(header[1:5], row[1:5], strict=True):
            suite, field, scale = column.split()[0], "kl" if " KL " in column else "first_word", 1 if " KL " in column else 100
            entries = [summary[(suite, method, b)] for b in budgets]
            assert all(shown(v.strip(), scale * e[field]) for v, e in zip(cell.split("/"), entries, strict=True)), row
            kls += [e["kl"] for e in entries] if field == "kl" else []
        assert shown(row[5], 100 * summary[("sparse", method, budgets[1])]["evidence_kept"]), row
        assert shown(row[6], sum(kls) / 4), row


def test_acckv_defaults_round10_probe_table_holds_its_outputs_numbers():
    """docs/acckv-defaults.md round 10's query-aware probes: accuracy, KL and evidence kept at 10 / 5 % are the probe
    runs' summary rows, each run's rows carry the commit the page names for it, and the last column is the paired
    comparison with the default committed beside them."""
    import csv

    (header, rows, output), = doc_tables("acckv-defaults.md", "method (query-aware, sparse, 12 clips)")
    paths, _ = named_outputs(output)
    found = {}
    for path in paths[:2]:
        commit = re.search(rf"`{path.relative_to(ROOT)}` \(code `([0-9a-f]+)`\)", output).group(1)
        assert {r["code_version"].split("+")[-1] for r in read_rows(str(path.parent.relative_to(ROOT / "results")))} == {commit}
        for r in csv.DictReader(path.open()):
            found[(r["method"], float(r["budget"]))] = r
    paired = paths[2].read_text()
    assert len(rows) == 4
    for row in rows:
        method = row[0].strip("`")
        for cell, (field, scale) in zip(row[1:4], (("first_word", 100), ("kl", 1), ("evidence_kept", 100))):
            values = [v.strip() for v in cell.split("/")]
            assert all(shown(v, scale * float(found[(method, b)][field])) for v, b in zip(values, (0.1, 0.05), strict=True)), row
        for part, budget in zip(row[4].split(" / "), ("0.1", "0.05"), strict=True):
            difference, interval = re.fullmatch(r"(\S+) \((.+)\)", part.strip()).groups()
            assert f"| sparse | query-aware | {budget} | acckv:pooling=3 | 12 | 60 | {difference} | {interval} |" in paired, row


def test_readme_index_once_table_holds_its_outputs_numbers():
    """The index-once table: file-size ratios at 20/10/5 % and the first answer's times and speed-up are the
    named benchmark output's, row by row (the rows are its parts, in order)."""
    header, rows, output = readme_table("clip")
    (path,), _ = named_outputs(output)
    parts = json.loads(path.read_text())["parts"]
    assert len(rows) == len(parts)
    for row, part in zip(rows, parts):
        tokens = re.search(r"\(([\d,]+) tokens\)", row[0])
        if tokens:
            assert int(tokens.group(1).replace(",", "")) == part["tokens"]
        ratios = {s["file"]: s["ratio_to_full_file"] for s in part["sizes"]}
        for cell, key in zip(row[1:4], ("0.2", "0.1", "0.05")):
            assert shown(cell, ratios[key]), (row[0], key, cell, ratios[key])
        video, file, speedup = re.fullmatch(r"([\d.]+) s → ([\d.]+) s \(×([\d.]+)\)", row[4]).groups()
        first = part["first_answer"]
        assert shown(video, first["from_video_s"]) and shown(file, first["from_file_s"]), (row, first)
        assert shown(speedup, first["speedup"])


def test_readme_full_cache_accuracy_is_the_full_test_runs():
    """The Limits' full-cache accuracy on the test splits is results/v2f-test/full's (per suite, order and count)."""
    match = re.search(r"core ([\d.]+) %, sparse ([\d.]+) % \(order ([\d.]+) %, counting ([\d.]+) %\), long "
                      r"\(60–180 s\) ([\d.]+) %", " ".join(README.read_text().split()))
    assert match, "full-cache accuracy sentence not found"
    full = {s: json.loads((ROOT / "results" / "v2f-test" / "full" / s / "summary.json").read_text())[0]
            for s in ("core", "sparse", "long")}
    values = [full["core"]["first_word"], full["sparse"]["first_word"], full["sparse"]["order"],
              full["sparse"]["count"], full["long"]["first_word"]]
    assert all(shown(text, 100 * value) for text, value in zip(match.groups(), values)), (match.groups(), values)


def test_acckv_defaults_round12_table_holds_its_outputs_numbers():
    """docs/acckv-defaults.md round 12: each cell (context / query-aware at 5 %) is its run's summary row, the audio
    column is the second seed's core audio family, the mean KL is over the eight cells, and every row of the four
    runs carries the commit the page names."""
    (header, rows, output), = doc_tables("acckv-defaults.md", "method (5 % media, validation)")
    paths, commit = named_outputs(output)
    runs = {}
    for path in paths:
        run = path.parent.relative_to(ROOT / "results")
        assert {r["code_version"].split("+")[-1] for r in read_rows(str(run))} == {commit}
        runs[path.parent.name] = {(e["protocol"], e["method"]): e for e in json.loads(path.read_text())}
    columns = [("seed1f-core", "first_word"), ("seed1f-core", "audio"), ("seed1f-sparse", "first_word"),
               ("v2f-core", "first_word"), ("v2f-sparse", "first_word")]
    assert len(rows) == 6
    for row in rows:
        method, kls = row[0].strip("`"), []
        for cell, (run, field) in zip(row[1:6], columns, strict=True):
            entries = [runs[run].get((p, method)) for p in ("context", "query-aware")]
            if cell == "–":
                assert entries == [None, None], (row[0], run)
                continue
            assert all(shown(v.strip(), 100 * e[field]) for v, e in zip(cell.split("/"), entries, strict=True)), (row[0], run)
            kls += [e["kl"] for e in entries] if field == "first_word" else []
        assert row[-1] == "–" if len(kls) < 8 else shown(row[-1], sum(kls) / 8), row


# --- docs tables that name their output: evaluation and long-clip accuracy ---------------------------------

def doc_tables(page: str, first_header: str) -> list:
    found = [(header, rows, output) for header, rows, output in tables((ROOT / "docs" / page).read_text())
             if header[0] == first_header and output]
    assert found, (page, first_header)
    return found


def summary_of(output: str) -> dict:
    (path, *_), commit = named_outputs(output)
    versions = {r["code_version"].split("+")[-1] for r in read_rows(path.parent.name)}
    assert versions == {commit}, (path, versions, commit)
    return {(e["protocol"], e["method"], float(budget_number(e["budget"]))): e for e in json.loads(path.read_text())}


def test_evaluation_doc_tables_hold_their_outputs_numbers():
    """docs/evaluation.md's results and ablation tables (v1 model, results/eval-test): every cell — overall
    first-word accuracy per protocol and budget, and the alignment family's at 10 / 5 % — is the summary's."""
    checked = 0
    for header, rows, output in doc_tables("evaluation.md", "method"):
        summary = summary_of(output)
        for row in rows:
            method = row[0].strip("`")
            for column, cell in zip(header[1:], row[1:]):
                protocol = "context" if "ctx" in column else "query-aware"
                field = "alignment" if column.startswith("align") else "first_word"
                budgets = [int(b) / 100 for b in re.findall(r"\d+", column)]
                for budget, value in zip(budgets, cell.split("/"), strict=True):
                    entry = summary[(protocol, method, 1.0 if method == "full" else budget)]
                    assert shown(value.strip(), 100 * entry[field]), (method, column, value, entry[field])
                    checked += 1
    assert checked >= 200  # 21 rows × 10 values


def test_long_videos_accuracy_table_holds_its_outputs_numbers():
    """docs/long-videos.md's long-clip table (results/eval-long-test): per method and budget, the family and
    overall accuracy under both protocols, the stream's agreement and KL, and its kept time."""
    (header, rows, output), = [t for t in doc_tables("long-videos.md", "method") if "budget" in t[0][1]]
    summary = summary_of(output)
    families = ("audio", "video", "alignment", "first_word")
    for row in rows:
        method, budget = row[0].strip("`"), 1.0 if row[1] == "all" else float(row[1])
        for protocol, cell in (("context", row[2]), ("stream", row[3])):
            values = [v.strip().strip("*") for v in cell.split("/")]
            entry = summary[(protocol, method, budget)]
            assert all(shown(v, 100 * entry[f]) for v, f in zip(values, families, strict=True)), (row, entry)
        agreement, kl = re.fullmatch(r"([\d.]+) %, ([\d.]+)", row[4]).groups()
        stream = summary[("stream", method, budget)]
        assert shown(agreement, 100 * stream["agreement"]) and shown(kl, stream["kl"]), (row, stream)
        assert shown(row[5], stream["kept_time"]), (row, stream)


# --- docs tables checked cell by cell against the output they name ------------------------------------------

ROUND_COLUMNS = {"audio": ("audio", 100), "video": ("video", 100), "alignment": ("alignment", 100),
                 "first word": ("first_word", 100), "media kept": ("media_kept", 100),
                 "evidence kept": ("evidence_kept", 100), "kept time": ("kept_time", 1), "kl": ("kl", 1)}


def test_acckv_defaults_round_tables_hold_their_outputs_numbers():
    """docs/acckv-defaults.md, rounds 1-3: every cell of every row (accuracy per family and overall, media and
    evidence kept, kept time, KL) is the named validation summary's entry for that protocol, method and budget.
    Catches: a cell edited or copied from another round, a table naming the wrong sweep."""
    checked = 0
    for header, rows, output in doc_tables("acckv-defaults.md", "protocol"):
        (path, *_), _ = named_outputs(output)
        summary = {(e["protocol"], e["method"], float(e["budget"])): e
                   for e in json.loads(path.read_text()) if "protocol" in e}
        for row in rows:
            entry = summary[(row[0], row[1].strip("`"), float(row[2]))]
            for column, cell in zip(header[3:], row[3:], strict=True):
                field, scale = ROUND_COLUMNS[column]
                assert shown(cell, scale * entry[field]), (path.parent.name, row[:3], column, cell, entry[field])
                checked += 1
    assert checked >= 8 * (40 + 19 + 68 + 44)


def round4_runs(output: str) -> list[dict]:
    """The `context` rows of every summary.csv the Output names (globs allowed), each with its run's folder."""
    import csv

    runs = []
    for pattern in output_refs(output)[0]:
        for path in sorted(ROOT.glob(pattern)):
            with path.open() as fh:
                runs += [dict(r, run=path.parent.name) for r in csv.DictReader(fh) if r["protocol"] == "context"]
    assert runs, output
    return runs


def one_run_holds(runs: list[dict], suite: str, method: str, cells: list[tuple[str, str, int]]) -> bool:
    """Some single run gives every "a / b" cell (field, scale) at 10 % and 5 % media for this suite and method."""
    for run in sorted({r["run"] for r in runs}):
        at = {float(r["budget"]): r for r in runs if (r["run"], r["suite"], r["method"]) == (run, suite, method)}
        if {0.1, 0.05} <= set(at) and all(
                shown(value.strip(), scale * float(at[budget][field]))
                for cell, field, scale in cells for value, budget in zip(cell.split("/"), (0.1, 0.05), strict=True)):
            return True
    return False


def test_acckv_defaults_round4_tables_hold_their_outputs_numbers():
    """docs/acckv-defaults.md, round 4 and O2: per row, one run of the named folders gives the core columns
    (accuracy, KL at 10 / 5 %) and one the sparse ones (accuracy, KL, evidence kept), under `context`; the mean
    KL is the mean of the four KLs shown. Catches: an edited cell, a row whose numbers mix two runs, a mean KL
    (the column the choice was made on) that is not the mean of its row."""
    (header, rows, output), = doc_tables("acckv-defaults.md", "method (context)")
    runs = round4_runs(output)
    for row in rows:
        method = re.match(r"`([^`]+)`", row[0]).group(1)
        assert one_run_holds(runs, "core", method, [(row[1], "first_word", 100), (row[2], "kl", 1)]), row
        assert one_run_holds(runs, "sparse", method, [(row[3], "first_word", 100), (row[4], "kl", 1),
                                                      (row[5], "evidence_kept", 100)]), row
        kls = [float(v) for cell in (row[2], row[4]) for v in cell.split("/")]
        assert abs(float(row[6]) - sum(kls) / 4) <= 0.0015, row
    (header, rows, output), = doc_tables("acckv-defaults.md", "method (context, sparse)")
    runs = round4_runs(output)
    for row in rows:
        assert one_run_holds(runs, "sparse", row[0].strip("`"), [(row[1], "first_word", 100), (row[2], "kl", 1),
                                                                 (row[3], "evidence_kept", 100)]), row
    (header, rows, output), = [t for t in doc_tables("acckv-defaults.md", "method") if "core KL" in t[0]]  # O2
    runs = round4_runs(output)
    for row in rows:
        method = re.match(r"`([^`]+)`", row[0]).group(1)
        core_5, sparse_5 = row[3].split("/")
        assert one_run_holds(runs, "core", method, [(row[1], "kl", 1)]), row
        at_5 = {r["suite"]: float(r["first_word"]) for r in runs
                if r["method"] == method and float(r["budget"]) == 0.05}
        assert shown(core_5.strip(), 100 * at_5["core"]) and shown(sparse_5.strip(), 100 * at_5["sparse"]), row
        assert one_run_holds(runs, "sparse", method, [(row[2], "kl", 1)]), row


def percents(cell: str) -> list[str]:
    return [v.strip().strip("*") for v in cell.split("/")]


def all_shown(cells: list[str], entry: dict, fields: tuple[str, ...], scale: float = 100) -> bool:
    """Each of `cells` is its field of `entry` (times `scale`), as many cells as fields."""
    return all(shown(c, scale * entry[f]) for c, f in zip(cells, fields, strict=True))


def span(values) -> str:
    """How the demo-model tables show the long suite's four quick-validation clips: lowest–highest family, in %."""
    low, high = min(values), max(values)
    return f"{100 * low:g}–{100 * high:g}"


def test_demo_model_training_tables_hold_their_outputs_numbers():
    """docs/demo-model.md's quick-validation tables: v2's curve, stage 2 against v2's last step, and v1's curve
    (from v1's training.json in git history): step, minutes, every family's accuracy, the long suite's range
    and multiple choice are the named training.json's `history`. Catches: an edited cell, a row from another
    step, the v1 table read from v2's file."""
    import subprocess

    *curves, (v1_header, v1_rows, v1_output) = doc_tables("demo-model.md", "step")
    assert [named_outputs(output)[0][0].parent.name for _, _, output in curves] == ["demo-v2e", "demo-v2"]
    for header, rows, output in curves:
        (path,), _ = named_outputs(output)
        history = {h["step"]: h for h in json.loads(path.read_text())["history"]}
        assert len(rows) == len(history)
        for row in rows:
            h = history[int(row[0])]
            v = h["validation"]
            assert shown(row[1], h["minutes"]), row
            assert all_shown(percents(row[2]), v["core"], ("audio", "video", "alignment")), row
            sparse = ("audio", "order", "count", "video", "alignment")
            assert all_shown(percents(row[3]), v["sparse"], sparse), row
            assert row[4] == span(v["long"].values()), row
            assert shown(row[5], 100 * v["mc"]), row
    (header, rows, output), = [t for t in doc_tables("demo-model.md", "model") if "multiple choice" in t[0]
                               and "step" not in t[0]]
    stage2, v2 = (named_outputs(output)[0][0], ROOT / "results" / "demo-v2" / "training.json")
    assert "demo-v2/training.json" in output
    for row in rows:
        source = v2 if row[0].startswith("v2") else stage2
        step = int(re.search(r"step (\d+)", row[0]).group(1))
        v = {h["step"]: h for h in json.loads(source.read_text())["history"]}[step]["validation"]
        sparse = ("audio", "order", "count", "video", "alignment")
        assert all_shown(percents(row[1]), v["sparse"], sparse), row
        if "per family" in row[2]:
            assert row[2] == span(v["long"].values()) + " per family", row
        else:
            assert all_shown(percents(row[2]), v["long"], ("audio", "order", "count")), row
        assert shown(row[3], 100 * v["mc"]), row
    (path,), (commit, *_) = output_refs(v1_output)
    v1 = json.loads(subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True,
                                   check=True).stdout)
    history = {h["step"]: h for h in v1["history"]}
    assert [int(r[0]) for r in v1_rows] == sorted(history)
    for row in v1_rows:
        h = history[int(row[0])]
        assert shown(row[1], h["minutes"]), row
        assert all_shown(row[2:], h["validation"], ("audio", "video", "alignment")), row


def test_stage_2f_table_is_its_and_its_controls_training_history():
    """docs/demo-model.md's stage-2f table: each row (v2e's last step, the control without the stop loss, v2f) is the
    named training.json's `history` at that step. Catches: an edited cell, the control's row read from v2f's file."""
    (header, rows, output), = [t for t in doc_tables("demo-model.md", "model") if "step" in t[0]]
    paths = {f"{p.parent.name}/{p.name}": p for p in named_outputs(output)[0]}
    assert set(paths) == {"demo-v2f/training.json", "demo-v2f/control-training.json", "demo-v2e/training.json"}
    sources = {"v2e": paths["demo-v2e/training.json"], "control": paths["demo-v2f/control-training.json"],
               "v2f": paths["demo-v2f/training.json"]}
    assert {row[0].split()[0] for row in rows} == set(sources)
    for row in rows:
        history = {h["step"]: h for h in json.loads(sources[row[0].split()[0]].read_text())["history"]}
        v = history[int(row[1])]["validation"]
        assert all_shown(percents(row[2]), v["core"], ("audio", "video", "alignment")), row
        assert all_shown(percents(row[3]), v["sparse"], ("audio", "order", "count", "video", "alignment")), row
        assert row[4] == span(v["long"].values()) and shown(row[5], 100 * v["mc"]), row


def test_demo_model_test_split_tables_hold_their_outputs_numbers():
    """docs/demo-model.md's full-cache test-split tables: v2 per suite (questions, every family, overall) is
    results/v2-full-test's summaries, whose rows ran the named code; v1 against v2 is results/eval-test (core),
    results/eval-long-test (long) and the same v2 summaries. These back the README's model limits. Catches: an
    edited cell, a suite's numbers swapped, a summary written by other code than its rows."""
    by_model = {}
    for header, rows, output in doc_tables("demo-model.md", "suite"):  # v2e's, then v2's
        paths, _ = named_outputs(output)
        codes = set(re.findall(r"`([0-9a-f]{7,40})`", output))  # one commit, or one per group of suites
        full = {}
        for path in paths:
            run = str(path.parent.relative_to(ROOT / "results"))
            versions = {r["code_version"].split("+")[-1] for r in read_rows(run)}
            assert len(versions) == 1 and versions <= codes, run
            full[path.parent.name], = json.loads(path.read_text())
        by_model[paths[0].parent.parent.name] = full
        fields = ("n", "audio", "order", "count", "video", "alignment", "first_word")
        for row in rows:
            entry = full[row[0].split()[0]]
            for column, cell, field in zip(header[1:8], row[1:8], fields, strict=True):
                cell = cell.strip("*")
                if cell == "–":
                    assert field not in entry, (row[0], column)
                else:
                    assert shown(cell, entry[field] if field == "n" else 100 * entry[field]), (row[0], column, cell)
    assert list(by_model) == ["full", "v2-full-test"]  # results/v2{f,e}-test/full/<suite>, results/v2-full-test/<suite>
    full = by_model["v2-full-test"]
    (header, rows, output), = [t for t in doc_tables("demo-model.md", "model") if "samples" in t[0]]
    summaries = {p.parent.name: json.loads(p.read_text()) for p in named_outputs(output)[0]}
    v1_core = next(e for e in summaries["eval-test"] if (e["protocol"], e["method"]) == ("context", "full"))
    v1_long = next(e for e in summaries["eval-long-test"] if (e["protocol"], e["method"]) == ("context", "full"))
    v1, v2 = rows
    assert all_shown(percents(v1[1]), v1_core, ("audio", "video", "alignment")), v1
    assert shown(v1[3].split()[0], 100 * v1_long["first_word"]), v1
    assert all_shown(percents(v2[1]), full["core"], ("audio", "video", "alignment")), v2
    overall, order, count = re.fullmatch(r"([\d.]+) \(order ([\d.]+), count ([\d.]+)\)", v2[2]).groups()
    assert shown(overall, 100 * full["sparse"]["first_word"]) and shown(order, 100 * full["sparse"]["order"])
    assert shown(count, 100 * full["sparse"]["count"]), v2
    assert shown(v2[3].split()[0], 100 * full["long"]["first_word"]), v2


def git_json(commit: str, path: str) -> dict:
    import subprocess

    return json.loads(subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True,
                                     check=True).stdout)


def test_index_once_doc_tables_hold_their_outputs_numbers():
    """docs/index-once.md: file sizes (MB and the ratios at 20 / 10 / 5 %) and the first answer's times and
    speed-ups are the named benchmark output's parts, in order; the runs table's committed runs (4 and 5) are
    the 8k-token parts' speed-ups and load averages of the file at each named commit. Catches: an edited cell,
    a size or time from another run, the run history rewritten."""
    (header, rows, output), = doc_tables("index-once.md", "clip")[:1]
    (path,), _ = named_outputs(output)
    parts = json.loads(path.read_text())["parts"]
    assert len(rows) == len(parts)
    for row, part in zip(rows, parts):
        sizes = {s["file"]: s for s in part["sizes"]}
        assert shown(row[1].removesuffix(" MB"), sizes["full"]["bytes"] / 1e6), row
        for cell, key in zip(row[2:5], ("0.2", "0.1", "0.05"), strict=True):
            assert shown(cell, sizes[key]["ratio_to_full_file"]), (row[0], key, cell)
    (header, rows, output), = doc_tables("index-once.md", "clip")[1:]
    (path,), _ = named_outputs(output)
    parts = json.loads(path.read_text())["parts"]
    assert len(rows) == len(parts)
    for row, part in zip(rows, parts):
        first = part["first_answer"]
        numbers = [c.removesuffix(" s").lstrip("×") for c in row[1:]]
        assert all_shown(numbers, first, ("from_video_s", "from_file_s", "speedup", "first_token_speedup"), 1), row
    (header, rows, output), = doc_tables("index-once.md", "run")
    (path,), _ = output_refs(output)
    runs = {int(n): commit for n, commit in re.findall(r"\brun (\d)\b[^;]*?commit `([0-9a-f]+)`", output)}
    for row in rows:
        number = int(row[0].split()[0])
        if number not in runs:
            continue
        data = git_json(runs[number], path)
        demo, shaped = data["parts"][1], data["parts"][2]
        assert shown(re.search(r"[\d.]+", row[3]).group(0), demo["first_answer"]["speedup"]), row
        assert shown(re.search(r"[\d.]+", row[4]).group(0), shaped["first_answer"]["speedup"]), row
        start, end = re.fullmatch(r"([\d.]+) → ([\d.]+)", row[2]).groups()
        load = data["machine"]["load_average_1min"]
        assert shown(start, load["start"]) and shown(end, load["end"]), row
        assert f"repeat {data['repeat']}" in row[0], row
    assert sorted(runs) == [4, 5]


def test_performance_doc_tables_hold_their_outputs_numbers():
    """docs/performance.md: the prefill-overhead table (per method and N; AccKV's hooks with the end-to-end
    difference), the decode table (KV MB, ms/token, ratios, the split of a step, the 36-layer projection), the
    hot-path before/after table and the many-questions table are their named benchmark outputs'. They back
    the performance claims (≤ 5 % overhead, decode not halving, 5–8× for ten questions). Catches: an edited
    cell, a row read from another size, budget or protocol."""
    (header, rows, output), = doc_tables("performance.md", "method")
    (path,), _ = named_outputs(output)
    sizes = json.loads(path.read_text())["sizes"]
    names = {"acckv (replayed)": "acckv", "acckv without calibration": "acckv-nocal", "full": "full"}
    for row in rows:
        for cell, size in zip(row[1:], sizes, strict=True):
            prefill = size["prefill"]
            if row[0] == "prefill, no method":
                assert shown(cell.removesuffix(" s"), prefill["none_s"]), (row[0], cell)
                continue
            if row[0].startswith("acckv, hooks"):
                hook, e2e = re.fullmatch(r"\+([\d.]+) % \(e2e Δ ([+−-][\d.]+) %\)", cell).groups()
                assert shown(hook, prefill["acckv_hook_overhead_pct"]), (row[0], cell)
                assert shown(e2e.replace("−", "-").lstrip("+"), prefill["acckv_e2e_overhead_pct"]), (row[0], cell)
                continue
            name = names.get(row[0], names.get(row[0].split(" (")[0], row[0].split(" (")[0]))
            method, = [m for m in size["methods"] if m["name"] == name and m["budget"] == 0.2]
            assert shown(cell.removeprefix("+").removesuffix(" %"), method["overhead_pct"]), (row[0], cell)
    (header, rows, output), = doc_tables("performance.md", "N")
    (path,), _ = named_outputs(output)
    decode = {(f"{s['n'] // 1024}k", d["setting"]): d
              for s in json.loads(path.read_text())["sizes"] for d in s["decode"]}
    columns = {"KV MB": lambda d: d["kv_bytes"] / 2 ** 20, "ms/token": lambda d: d["ms_per_token"],
               "× full": lambda d: d["ratio_to_full"], "× full·fw": lambda d: d["ratio_to_full_fw"],
               "attn core": lambda d: d["profile"]["attention_core_ms"],
               "KV append": lambda d: d["profile"]["kv_append_ms"],
               "attn proj": lambda d: d["profile"]["attention_proj_ms"], "MLP": lambda d: d["profile"]["mlp_ms"],
               "LM head": lambda d: d["profile"]["lm_head_ms"],
               "× full·fw, 36 layers": lambda d: d["projected_ratio_to_full_fw"]}
    assert len(rows) == len(decode)
    for row in rows:
        d = decode[(row[0], row[1])]
        for column, cell in zip(header[2:], row[2:], strict=True):
            assert shown(cell, columns[column](d)), (row[:2], column, cell, columns[column](d))
    (header, rows, output), = doc_tables("performance.md", "step")
    (path,), _ = named_outputs(output)
    hot = json.loads(path.read_text())
    keys = {"acckv without calibration": "acckv-nocal",
            "decode attention `acckv_sdpa`, one token": "decode_attention_ms"}
    for row in rows:
        key = keys.get(row[0], row[0])
        for cell, size in zip(row[1:], ("8k", "16k"), strict=True):
            before, after = cell.split(" → ")
            assert shown(before, hot[size]["before"][key]), (row[0], size, cell)
            assert shown(after, hot[size]["after"][key]), (row[0], size, cell)
    (header, rows, output), = doc_tables("performance.md", "protocol")
    (path,), _ = named_outputs(output)
    measured = {(p["protocol"], r["questions"]): r
                for p in json.loads(path.read_text())["protocols"] for r in p["rows"]}
    assert len(rows) == len(measured)
    for row in rows:
        r = measured[(row[0], int(row[1]))]
        numbers = [c.removesuffix(" s").removesuffix("×") for c in row[2:]]
        assert all_shown(numbers, r, ("reuse_s", "no_reuse_s", "speedup", "reuse_vs_one"), 1), row


def test_ray_throughput_table_holds_its_outputs_numbers():
    """docs/commands.md's Ray table: steady and end-to-end items/s per worker count are the means of the named
    output's rounds, and the ratio is steady two workers over one. Catches: an edited cell, one round shown as
    the mean, the end-to-end and steady columns swapped."""
    (header, rows, output), = [t for t in tables((ROOT / "docs" / "commands.md").read_text()) if t[2]]
    (path,), _ = named_outputs(output)
    runs = json.loads(path.read_text())["runs"]

    def mean(workers, field):
        values = [r[field] for r in runs if r["workers"] == workers]
        return sum(values) / len(values)

    for row in rows:
        workers = int(row[0].split()[0])
        assert shown(row[1], mean(workers, "items_per_s")), row
        assert shown(row[2], mean(workers, "end_to_end_items_per_s")), row
        assert shown(row[3].strip("*").removesuffix("×"), mean(workers, "items_per_s") / mean(1, "items_per_s")), row


def stream_bench_cells(data: dict, minutes: float) -> dict:
    """What `acckv bench --stream`'s tables show for one clip length, from its JSON rows and targets."""
    one, stream = (next(r for r in data["rows"] if r["mode"] == mode and r["minutes"] == minutes)
                   for mode in ("one-shot", "stream"))
    index = sorted({r["minutes"] for r in data["rows"]}).index(minutes)
    return {"tokens": one["prefix_tokens"], "peak RSS one-shot (MB)": one["peak_rss_mb"],
            "peak RSS stream (MB)": stream["peak_rss_mb"], "KV peak one-shot (MB)": one["kv_peak_mb"],
            "KV peak stream (MB)": stream["kv_peak_mb"], "KV kept (MB)": stream["kv_final_mb"],
            "s/min one-shot": one["prefill_s"] / minutes, "s/min stream": stream["prefill_s"] / minutes,
            "stream / one-shot time": data["targets"]["stream_over_one_shot_time"][index],
            "stream steps": f"{stream['steps']} × {stream.get('step_s') or 60 * minutes / stream['steps']:g} s",
            "cpu": stream.get("prefill_cpu_s", 0) / one.get("prefill_cpu_s", 1)}


def test_long_videos_stream_tables_hold_their_outputs_numbers():
    """docs/long-videos.md: the 10-minute file's one-thread runs (CPU, ratio, wall, peak RSS per protocol and
    code), `bench --stream` after the change and before it (every column per length), and the before/after
    runs (wall and CPU ratios at 1 and 2 minutes, the stream's peak) are the named outputs'. They back the
    issue #27 targets. Catches: an edited cell, a run's numbers under another run's name, the ratio of another
    length."""
    page = (ROOT / "docs" / "long-videos.md").read_text()
    (header, rows, output), = [t for t in tables(page) if t[0][0] == "protocol" and t[2]]
    (path,), _ = named_outputs(output)
    runs = [r for r in json.loads(path.read_text())["runs"] if r["torch_threads"].startswith("1")]
    for row in rows:
        code, protocol = row[1], row[0].split()[0].strip("`")
        ours = sorted((r for r in runs if r["code"].removesuffix(" (before)") == code), key=lambda r: r["round"])
        mine = [r for r in ours if r["protocol"] == protocol]
        other = [r for r in ours if r["protocol"] != protocol]
        assert [r["round"] for r in mine] == [1, 2], row
        cpu = re.findall(r"[\d.]+", row[2])
        assert all(shown(c, r["cpu_s"]) for c, r in zip(cpu, mine, strict=True)), row
        if row[3]:
            ratios = re.findall(r"[\d.]+", row[3])
            assert all(shown(c, r["cpu_s"] / o["cpu_s"]) for c, r, o in zip(ratios, mine, other, strict=True)), row
        assert all(shown(c, r["wall_s"]) for c, r in zip(re.findall(r"[\d.]+", row[4]), mine, strict=True)), row
        peaks = re.findall(r"[\d.]+", row[5])
        assert all(shown(peaks[min(i, len(peaks) - 1)], r["peak_rss_gb"]) for i, r in enumerate(mine)), row
    for header, rows, output in [t for t in tables(page) if t[0][0] == "minutes" and t[2]]:
        (path, *_), _ = named_outputs(output)
        data = json.loads(path.read_text())
        for row in rows:
            expected = stream_bench_cells(data, float(row[0]))
            for column, cell in zip(header[1:], row[1:], strict=True):
                if column == "stream steps":
                    assert cell == expected[column], (path.name, row[0], cell)
                else:
                    assert shown(cell.lstrip("×"), expected[column]), (path.name, row[0], column, cell)
    (header, rows, output), = [t for t in tables(page) if t[0][0] == "code" and t[2]]
    for row in rows:
        name = re.search(r"`([\w-]+)`", row[2]).group(1)
        assert f"results/bench-stream-issue27/{name}.json" in output, name
        data = json.loads((ROOT / "results" / "bench-stream-issue27" / f"{name}.json").read_text())
        cells = [stream_bench_cells(data, m) for m in (1.0, 2.0)]
        assert row[1] == f"{cells[0]['stream steps'].split(' × ')[1]}", row
        for values, key in ((row[3], "stream / one-shot time"), (row[4], "cpu"), (row[5], "peak RSS stream (MB)")):
            shown_values = re.findall(r"[\d.]+", values)
            assert all(shown(v, c[key]) for v, c in zip(shown_values, cells, strict=True)), (name, key, values)


def test_gpu_check_plan_row_holds_its_outputs_figures():
    """docs/performance.md's GPU-check stages: the `plan` row's figures (parameters, bfloat16 weights, KV per
    token, peak estimates at 8k / 32k) are the named dry run's plan.json. Catches: the row edited, or the plan
    changed without the doc."""
    (header, rows, output), = [t for t in tables((ROOT / "docs" / "performance.md").read_text()) if t[0][0] == "stage"]
    (path,), _ = named_outputs(output)
    plan = json.loads(path.read_text())
    row, = [r for r in rows if r[0] == "`plan`"]
    parameters, weights, kib, peak_8k, peak_32k = re.search(
        r"([\d.]+) B parameters, ([\d.]+) GiB .*?, (\d+) KiB of KV per token .*?([\d.]+) / ([\d.]+) GiB at 8k / 32k",
        row[1]).groups()
    assert shown(parameters, plan["parameters"] / 1e9) and shown(weights, plan["weights_gb"]), row
    assert shown(kib, plan["kv_bytes_per_token"] / 1024), row
    peaks = [s["peak_estimate_gb"] for s in plan["sizes"]]
    assert shown(peak_8k, peaks[0]) and shown(peak_32k, peaks[1]), (row, peaks)


def test_demo_model_lens_table_holds_its_outputs_numbers():
    """docs/demo-model.md's logit-lens table: each model's per-layer shares (free, lettered) and letter accuracy
    are its lens.json's. Catches: an edited cell, the two ways of asking swapped, a row read from the other model."""
    (header, rows, output), = [t for t in doc_tables("demo-model.md", "model") if "letter accuracy" in t[0]]
    paths, _ = named_outputs(output)
    assert len(rows) == len(paths) == 2
    for row, path in zip(rows, paths):
        lens = json.loads(path.read_text())
        share = lens["answer_word_first_per_layer"]
        for cell, mode in ((row[1], "free"), (row[2], "choice")):
            values = [v.strip() for v in cell.split("/")]
            assert len(values) == len(share[mode]) and all(shown(v, 100 * x) for v, x in zip(values, share[mode])), row
        assert shown(row[3], 100 * lens["letter_accuracy"]), row


def eight_cell_tables() -> list[tuple]:
    """docs/acckv-defaults.md's tables of eight cells (suite × protocol, each 10 / 5 %): rounds 5 and later."""
    return [t for t in doc_tables("acckv-defaults.md", "method") if "agreement" in t[0]]


def test_the_eight_cell_tables_are_rounds_5_to_11():
    assert len(eight_cell_tables()) == 10  # rounds 7 and 8 have one per demo model, round 9 two


@pytest.mark.parametrize("table", range(10))
def test_acckv_defaults_round5_and_later_tables_hold_their_outputs_numbers(table):
    """docs/acckv-defaults.md, rounds 5 and 6: every accuracy and KL cell (suite × protocol × 10 / 5 %) is the
    named runs' summary row for that method, and the agreement and mean KL columns are the means of the eight
    cells. Catches: an edited cell, a cell read from another protocol or suite, a mean that is not its row's."""
    import csv

    header, rows, output = eight_cell_tables()[table]
    found: dict[tuple, dict] = {}
    for path in named_outputs(output)[0]:
        for r in csv.DictReader(path.open()):
            found.setdefault((r["method"], r["suite"], r["protocol"], float(r["budget"])), r)
    assert len(rows) >= 6 and {"`full`", "`random`"} <= {row[0] for row in rows}
    for row in rows:
        method = row[0].strip("`")
        kls, agreements = [], []
        for column, cell in zip(header[1:-2], row[1:-2]):
            if cell == "–":  # a reference not run on that suite (the oracle on core)
                continue
            suite, protocol = column.split()[:2]
            field, scale = ("kl", 1) if " KL " in column else ("first_word", 100)
            budgets = (1.0, 1.0) if method == "full" else (0.1, 0.05)
            entries = [found[(method, suite, protocol, budget)] for budget in budgets]
            values = [v.strip() for v in cell.split("/")]
            assert all(shown(v, scale * float(e[field])) for v, e in zip(values, entries, strict=True)), (row[0], column)
            if field == "kl":
                kls += [float(e["kl"]) for e in entries]
                agreements += [float(e["agreement"]) for e in entries]
        if row[-1] == "–":
            assert method == "oracle" and len(kls) < 8, row
            continue
        assert len(kls) == 8 and shown(row[-1], sum(kls) / 8) and shown(row[-2], 100 * sum(agreements) / 8), row
    full = next(row for row in rows if row[0] == "`full`")
    assert all(set(v.strip() for v in cell.split("/")) == {"0.000"} for cell in full[2:-2:2])  # no compression: KL 0


def test_benchmarks_multiple_choice_table_is_a_count_of_the_committed_answers():
    """docs/benchmarks.md's sample multiple-choice row: choice accuracy, unparsed answers and the per-family
    choice accuracy, counted from the committed answers by the reader itself (`parse_choice`), not read from the
    summary; and the accuracy is well above chance (issue #23's done-when). Catches: an edited cell, a choice
    scored by another rule than the reader's, a model answering at chance."""
    from acckv_cli.evaluation.choices import answer_index, parse_choice

    (header, rows, output), = [t for t in tables((ROOT / "docs" / "benchmarks.md").read_text())
                               if t[0][0] == "built-in model"]
    (path,), commit = named_outputs(output)
    answers = read_rows(str(path.parent.relative_to(ROOT / "results")))
    assert {r["code_version"].split("+")[-1] for r in answers} == {commit}
    read = [parse_choice(r["answer"], r["options"]) for r in answers]
    right = [i == answer_index(r["expected"], r["options"]) for i, r in zip(read, answers)]
    assert [bool(r["choice_correct"]) for r in answers] == right
    (row,) = rows
    assert shown(row[1], 100 * sum(right) / len(right)) and int(row[2]) == read.count(None)
    families = [[ok for ok, r in zip(right, answers) if r["family"] == f] for f in ("audio", "video", "alignment")]
    assert all(shown(v.strip(), 100 * sum(f) / len(f)) for v, f in zip(row[3].split("/"), families, strict=True))
    assert sum(right) / len(right) >= 2 * float(row[4]) / 100 == 0.5  # at least twice chance (4 options)
