"""MUSIC-AVQA (Li et al., CVPR 2022, "Learning to Answer Questions in Dynamic Audio-Visual Scenarios"): over 45k
open questions on 9,288 music performance videos, each answered with one word ("two", "yes", "cello",
"left", …).

Layout followed: `avqa-{train,val,test}.json` of the official repository github.com/GeWu-Lab/MUSIC-AVQA
(`data/json/`, as its `net_grd_avst/dataloader_avst.py` and `main_avst.py` read them): a list of objects with
`video_id` ("00000823"), `question_id`, `type` (the text of a list: '["Audio-Visual", "Counting"]'),
`question_content` with placeholders ("How many <Object> are …?"), `templ_values` (the text of the list that
fills them, in order), `question_deleted` and `anser` (sic: the answer). Rows with `question_deleted` set are
skipped. Videos: `<video_id>.mp4` (the MUSIC-AVQA-videos-Real / -Synthetic archives; both folders are looked
in). No options: scored as short free answers (first word, exact, normalised). The family is the type,
"Audio-Visual/Counting", the breakdown of the paper's table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from acckv_cli.errors import Fail
from acckv_cli.evaluation.formats.base import BenchmarkFormat, as_list, find_video, need, register

_PLACEHOLDER = re.compile(r"<[^<>]+>")


def fill(template: str, values: list, where: str) -> str:
    """The question with each <placeholder> replaced, in order, by its template value."""
    values = [str(v) for v in values]
    slots = _PLACEHOLDER.findall(template)
    if len(slots) > len(values):
        raise Fail(f"{where}: {len(slots)} placeholder(s) in {template!r} but {len(values)} templ_values", 2)
    it = iter(values)
    return _PLACEHOLDER.sub(lambda m: next(it), template)


def rows(data: Any, root: Path, where: str) -> Iterator[dict]:
    if not isinstance(data, list):
        raise Fail(f"{where}: expected MUSIC-AVQA's avqa-*.json (a list of questions)", 2)
    for n, qa in enumerate(data, 1):
        at = f"{where}: item {n}"
        if isinstance(qa, dict) and str(qa.get("question_deleted", 0)) not in ("0", "", "None", "False"):
            continue
        video_id = str(need(qa, "video_id", at))
        values = as_list(qa.get("templ_values") or "[]", at, "templ_values")
        kind = qa.get("type")
        family = "/".join(str(t) for t in as_list(kind, at, "type")) if kind not in (None, "") else None
        answer = qa.get("anser", qa.get("answer"))
        yield {"id": str(qa.get("question_id", n)),
               "video": find_video(root, video_id, f"MUSIC-AVQA-videos-Real/{video_id}",
                                   f"MUSIC-AVQA-videos-Synthetic/{video_id}"),
               "question": fill(str(need(qa, "question_content", at)), values, at),
               "answer": None if answer in (None, "") else str(answer), "family": family or None}


FORMAT = register(BenchmarkFormat(
    "music-avqa",
    "data/json/avqa-{train,val,test}.json of GeWu-Lab/MUSIC-AVQA (CVPR 2022 release)",
    "`video_id`, `question_id`, `question_content` + `templ_values`, `anser`, `type`, `question_deleted`",
    rows))
