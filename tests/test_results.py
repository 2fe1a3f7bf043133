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
       "v2-compare-test-r4/query-aware", "v2-long-stream-test")


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
            start = next((k for k in range(j, min(j + 4, len(lines))) if lines[k].lstrip().startswith("Output:")), None)
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
    shown_rows = [(float(r[0].removesuffix(" s")), float(r[1].replace(",", "")), float(r[2].replace(",", ""))) for r in rows]
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
    summary = {(e.get("suite"), e["method"], float(budget_number(e["budget"]))): e for e in json.loads(
        (ROOT / "results/v2-compare-test-r4/context/summary.json").read_text())}
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
    """The Limits' full-cache accuracy on the test splits is results/v2-full-test's (per suite, order and count)."""
    match = re.search(r"core ([\d.]+) %, sparse ([\d.]+) % \(order ([\d.]+) %, counting ([\d.]+) %\), long "
                      r"\(60–180 s\) ([\d.]+) %", " ".join(README.read_text().split()))
    assert match, "full-cache accuracy sentence not found"
    full = {s: json.loads((ROOT / "results" / "v2-full-test" / s / "summary.json").read_text())[0]
            for s in ("core", "sparse", "long")}
    values = [full["core"]["first_word"], full["sparse"]["first_word"], full["sparse"]["order"],
              full["sparse"]["count"], full["long"]["first_word"]]
    assert all(shown(text, 100 * value) for text, value in zip(match.groups(), values)), (match.groups(), values)


# --- docs tables that name their output (docs/evaluation.md, docs/long-videos.md) ---------------------------

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
