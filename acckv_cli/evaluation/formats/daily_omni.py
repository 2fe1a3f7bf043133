"""Daily-Omni (Zhou et al. 2025, arXiv 2505.17862): 1,197 four-option audio-visual questions on 30-s and 60-s
clips, six question types (AV event alignment, comparative, context understanding, event sequence,
inference, reasoning).

Layout followed: `qa.json` of the dataset `liarliar/Daily-Omni` as the benchmark's own evaluation script
reads it (github.com/Lliar-liar/Daily-Omni, `test_model/Qwen2.5-Omni/testmodel.py`, 2026-03): a list of
objects with `Question`, `Choice` (["A. …", …]), `Answer` (a letter), `video_id`, `Type`,
`video_category` and `video_duration` ("30s"/"60s"). Videos: `Videos/<id>/<id>_video.mp4` (the dataset's
`Videos.tar`, unpacked). The family is `Type`, the per-type breakdown of the leaderboard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from acckv_cli.errors import Fail
from acckv_cli.evaluation.formats.base import BenchmarkFormat, find_video, need, register


def rows(data: Any, root: Path, where: str) -> Iterator[dict]:
    if not isinstance(data, list):
        raise Fail(f"{where}: expected Daily-Omni's qa.json (a list of questions)", 2)
    seen: dict[str, int] = {}
    for n, qa in enumerate(data, 1):
        at = f"{where}: item {n}"
        video_id = str(need(qa, "video_id", at))
        seen[video_id] = seen.get(video_id, 0) + 1  # no question id in the file: number them per video
        yield {"id": f"{video_id}-{seen[video_id]}",
               "video": find_video(root, f"Videos/{video_id}/{video_id}_video", f"{video_id}/{video_id}_video",
                                   video_id),
               "question": need(qa, "Question", at), "options": need(qa, "Choice", at),
               "answer": need(qa, "Answer", at), "family": qa.get("Type") or None}


FORMAT = register(BenchmarkFormat(
    "daily-omni",
    "qa.json of liarliar/Daily-Omni as its evaluation script test_model/Qwen2.5-Omni/testmodel.py reads it "
    "(2026-03)",
    "`video_id`, `Question`, `Choice`, `Answer`, `Type`",
    rows))
