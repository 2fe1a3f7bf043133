"""OmniVideoBench (NJU-LINK 2025, arXiv 2510.10689): 1,000 four-option audio-visual reasoning questions on 628
videos of seconds to 30 minutes.

Layout followed: the data JSON of the dataset `NJU-LINK/OmniVideoBench` as the repository's `dataloader.py`
reads it (github.com/NJU-LINK/OmniVideoBench, with `data_example/example_data.json`, 2025-10): a list of
videos with `video` (the file name without `.mp4`), `video_type`, `duration` ("MM:SS") and `questions`, each
with `question`, `question_type`, `audio_type`, `reasoning_steps`, `answer` (the right option's text),
`options` (["A.…", …]; with or without a space after the dot) and `correct_option` (a letter). Videos:
`<video>.mp4`. The family is `question_type`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from acckv_cli.errors import Fail
from acckv_cli.evaluation.formats.base import BenchmarkFormat, find_video, need, register


def rows(data: Any, root: Path, where: str) -> Iterator[dict]:
    if not isinstance(data, list):
        raise Fail(f"{where}: expected OmniVideoBench's data JSON (a list of videos with their questions)", 2)
    for n, clip in enumerate(data, 1):
        at = f"{where}: video {n}"
        name = str(need(clip, "video", at))
        video = find_video(root, name, f"videos/{name}")
        for k, qa in enumerate(need(clip, "questions", at), 1):
            q_at = f"{at}, question {k}"
            yield {"id": f"{name}-{k}", "video": video, "question": need(qa, "question", q_at),
                   "options": need(qa, "options", q_at),
                   "answer": qa.get("correct_option") or need(qa, "answer", q_at),  # the letter; else the text
                   "family": qa.get("question_type") or None}


FORMAT = register(BenchmarkFormat(
    "omnivideobench",
    "the data JSON of NJU-LINK/OmniVideoBench as its dataloader.py reads it (example: "
    "data_example/example_data.json, 2025-10)",
    "`video`; per item of `questions`: `question`, `options`, `correct_option` (else `answer`), "
    "`question_type`",
    rows))
