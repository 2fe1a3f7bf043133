"""AVQA (Yang et al., ACM MM 2022, "AVQA: A Dataset for Audio-Visual Question Answering on Videos"):
four-option questions on 10-s VGGSound clips of real-life audio-visual events.

Layout followed: `train_qa.json` / `val_qa.json` of the official repository github.com/AlyssaYoung/AVQA
(`data/annotation/`, the files the dataset site mn.cs.tsinghua.edu.cn/avqa links): a list of objects with
`id`, `video_name` (the VGGSound clip, e.g. "-HG3Omg_89c_000030"), `video_id`, `question_text`,
`multi_choice` (four option texts, no letters), `answer` (the 0-based index of the right option),
`question_relation` and `question_type`. Videos: `<video_name>.mp4` (VGGSound clips; or under `videos/`).
The family is `question_type` (joined with "/" where a file stores it as a list).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from acckv_cli.errors import Fail
from acckv_cli.evaluation.formats.base import BenchmarkFormat, find_video, need, register


def _family(value: object) -> str | None:
    if isinstance(value, (list, tuple)):
        return "/".join(str(v) for v in value) or None
    return str(value) if value not in (None, "") else None


def rows(data: Any, root: Path, where: str) -> Iterator[dict]:
    if not isinstance(data, list):
        raise Fail(f"{where}: expected AVQA's train_qa.json / val_qa.json (a list of questions)", 2)
    for n, qa in enumerate(data, 1):
        at = f"{where}: item {n}"
        name = str(need(qa, "video_name", at))
        answer = need(qa, "answer", at)
        if isinstance(answer, str) and answer.strip().isdigit():  # an index written as text
            answer = int(answer)
        yield {"id": str(qa.get("id", n)), "video": find_video(root, name, f"videos/{name}"),
               "question": need(qa, "question_text", at), "options": need(qa, "multi_choice", at),
               "answer": answer, "family": _family(qa.get("question_type"))}


FORMAT = register(BenchmarkFormat(
    "avqa",
    "data/annotation/{train,val}_qa.json of AlyssaYoung/AVQA (ACM MM 2022 release)",
    "`id`, `video_name`, `question_text`, `multi_choice`, `answer` (0-based index), `question_type`",
    rows))
