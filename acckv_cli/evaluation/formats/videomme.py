"""Video-MME (Fu et al. 2024, arXiv 2405.21075): 2,700 four-option questions on 900 videos (short, medium,
long: up to an hour), twelve task types; run here with the video's own soundtrack ("with audio").

Layout followed: the test split of the dataset `lmms-lab/Video-MME` (config `videomme`, the file
`videomme/test-00000-of-00001.parquet`) as lmms-eval 0.7.3's `tasks/videomme/utils.py` reads it: one row per
question with `video_id` ("001"), `duration`, `domain`, `sub_category`, `videoID` (the YouTube id the video
files are named by), `question_id`, `task_type`, `question`, `options` (["A. …", …]) and `answer` (a
letter). Videos: `data/<videoID>.mp4` (the dataset's `videos_chunked_*.zip`, unpacked; `.MP4` and `.mkv`
too, as lmms-eval looks for them). Parquet needs pyarrow; the same rows as JSON or JSON Lines need nothing.

Also read: the nested list of the official repository's `evaluation/output_test_template.json`
(github.com/BradyFU/Video-MME): per video `video_id` (and `videoID` where present), per question in
`questions` `question_id`, `task_type`, `question`, `choices` or `options`, `answer`. The family is
`task_type`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from acckv_cli.errors import Fail
from acckv_cli.evaluation.formats.base import BenchmarkFormat, find_video, need, register


def _video(root: Path, name: str) -> str:
    return find_video(root, f"data/{name}", name)


def _question(qa: dict, video: str, at: str, fallback_id: str) -> dict:
    options = qa.get("options") if qa.get("options") is not None else qa.get("choices")
    if options is None:
        raise Fail(f"{at}: missing 'options'", 2)
    return {"id": str(qa.get("question_id") or fallback_id), "video": video, "question": need(qa, "question", at),
            "options": options, "answer": need(qa, "answer", at), "family": qa.get("task_type") or None}


def rows(data: Any, root: Path, where: str) -> Iterator[dict]:
    if not isinstance(data, list):
        raise Fail(f"{where}: expected a list of Video-MME rows (or of videos with their questions)", 2)
    for n, record in enumerate(data, 1):
        at = f"{where}: item {n}"
        if not isinstance(record, dict):
            raise Fail(f"{at}: not an object", 2)
        name = str(record.get("videoID") or need(record, "video_id", at))  # files are named by the YouTube id
        if "questions" in record:  # the official repository's nested template
            for k, qa in enumerate(record["questions"] or [], 1):
                yield _question(qa, _video(root, name), f"{at}, question {k}", f"{name}-{k}")
        else:
            yield _question(record, _video(root, name), at, f"{name}-{n}")


FORMAT = register(BenchmarkFormat(
    "videomme",
    "lmms-lab/Video-MME test split (videomme/test-00000-of-00001.parquet) as lmms-eval 0.7.3 reads it; or the "
    "nested evaluation/output_test_template.json of BradyFU/Video-MME",
    "`videoID` (else `video_id`), `question_id`, `question`, `options` (or `choices`), `answer`, `task_type`; "
    "nested: the same per question under `questions`",
    rows))
