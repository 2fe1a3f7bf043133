"""How long a clip the model can place: its mRoPE position range, in seconds.

Qwen-Omni places media by time: a media token at t seconds gets temporal position ≈ t × the family's
positions per second (25 for Qwen2.5-Omni, 13 for Qwen3-Omni) from the start of the media block, whatever
the frame rate (a frame pair at 2 fps or at 1 fps that starts at t has the same position). So the frame
rate requested with `--fps` is kept for any clip (no 768-frame cap), and what bounds a clip is the text
decoder's `max_position_embeddings` (32,768 for Qwen2.5-Omni): beyond it positions leave the range the
model was trained on. `RESERVE` positions are kept for the system prompt, the question, the assistant
header and the answer.

Two checks, both one-line `ClipTooLong` errors (exit code 2):
* `duration_check(lm)` — from the container's duration, before anything is decoded;
* `check_prompt(lm, positions)` — exact, on the prompt's own positions.
"""

from __future__ import annotations

import math
from typing import Callable

from acckv_cli.errors import MediaError
from acckv_cli.media.probe import MediaInfo

RESERVE = 512  # positions for the system prompt, question, assistant header and answer


class ClipTooLong(MediaError):
    """The clip lasts longer than the model's position range can place."""


def max_positions(lm) -> int:
    return int(lm.thinker.config.get_text_config(decoder=True).max_position_embeddings)


def positions_per_second(lm) -> float:
    return lm.family.position_id_per_seconds(lm.thinker.config)


def longest_clip_s(lm) -> float:
    """Longest clip whose media, plus `RESERVE` positions of text, fits the position range."""
    return (max_positions(lm) - RESERVE) / positions_per_second(lm)


def _clock(seconds: float) -> str:
    seconds = int(math.floor(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def too_long_message(lm, what: str, duration_s: float) -> str:
    longest = longest_clip_s(lm)
    return (f"{what} lasts {duration_s:.0f} s, longer than the {math.floor(longest)} s ({_clock(longest)}) of "
            f"media {lm.family.title} can place: its {max_positions(lm):,} mRoPE positions hold "
            f"{positions_per_second(lm):g} per second of media (at any --fps) plus {RESERVE} for the text; "
            f"trim the clip (e.g. ffmpeg -i IN -t {math.floor(longest)} -c copy OUT)")


def duration_check(lm) -> Callable[[MediaInfo], None]:
    """A check `media.decode` runs right after probing: raises ClipTooLong for a clip beyond the range."""
    def check(info: MediaInfo) -> None:
        if info.duration_s > longest_clip_s(lm):
            raise ClipTooLong(too_long_message(lm, repr(info.path), info.duration_s))
    return check


def check_prompt(lm, layout) -> None:
    """Exact check on a prompt prefix's `TokenLayout`: its last position + `RESERVE` must fit the range."""
    last = float(layout.positions.max()) if len(layout) else 0.0
    if last + 1 + RESERVE > max_positions(lm):
        raise ClipTooLong(too_long_message(lm, "the clip", layout.duration_s))
