"""WorldSense (Hong et al. 2025, arXiv 2502.04326): 3,172 four-option questions on 1,662 clips with audio.

Layout followed: `worldsense_qa.json` of the dataset `honglyhly/WorldSense` as read by VLMEvalKit's
`vlmeval/dataset/worldsense.py` (2025): an object keyed by video id, each value holding the clip's fields
(`duration`, `domain`, `sub_category`, `audio_class`, `video_caption`) and one object per question under
`task0`, `task1`, … with `question`, `candidates` (["A. …", …]), `answer` (a letter), `task_type` and
`task_domain`. Videos: `videos/<video id>.mp4` (the dataset's zip archives, unpacked).

Also read: the flat rows of lmms-eval's `worldsense` task (lmms-eval 0.7.3, dataset `lmms-lab/worldsense`,
one row per question with `index`, `video_path`, `question`, `candidates`, `answer`, `task_type`), as JSON,
JSON Lines or Parquet. The family is `task_type` (26 task types), the category both harnesses report by.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from acckv_cli.errors import Fail
from acckv_cli.evaluation.formats.base import BenchmarkFormat, find_video, need, register, relative


def _task_order(key: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", key)
    return (int(digits) if digits else 0, key)


def rows(data: Any, root: Path, where: str) -> Iterator[dict]:
    if isinstance(data, dict):  # the official worldsense_qa.json
        for key, clip in data.items():
            if not isinstance(clip, dict):
                raise Fail(f"{where}: {key!r} is not an object of tasks", 2)
            video_id = str(clip.get("video_id") or key)
            video = find_video(root, f"videos/{video_id}", video_id)
            for task in sorted((k for k in clip if k.startswith("task")), key=_task_order):
                qa, at = clip[task], f"{where}: {key}.{task}"
                yield {"id": f"{video_id}-{task}", "video": video, "question": need(qa, "question", at),
                       "options": need(qa, "candidates", at), "answer": need(qa, "answer", at),
                       "family": qa.get("task_type") or None}
    elif isinstance(data, list):  # lmms-eval's flat rows
        for n, qa in enumerate(data, 1):
            at = f"{where}: item {n}"
            video = relative(need(qa, "video_path", at))
            yield {"id": str(qa.get("index", n)), "video": find_video(root, video, f"videos/{Path(video).name}"),
                   "question": need(qa, "question", at), "options": need(qa, "candidates", at),
                   "answer": need(qa, "answer", at), "family": qa.get("task_type") or None}
    else:
        raise Fail(f"{where}: expected worldsense_qa.json (an object keyed by video) or a list of rows", 2)


FORMAT = register(BenchmarkFormat(
    "worldsense",
    "worldsense_qa.json of honglyhly/WorldSense as VLMEvalKit reads it (2025); or lmms-eval 0.7.3's flat rows",
    "per video key: `video_id` (else the key); per `task*`: `question`, `candidates`, `answer`, `task_type`; "
    "flat rows: `index`, `video_path`, `question`, `candidates`, `answer`, `task_type`",
    rows))
