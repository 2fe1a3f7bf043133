"""Does AccKV's Attention Redistribution (A-R) change what is kept? Per layer, on the demo model.

For each sample clip, AccKV's kept sets with `redistribution=visible_count` (the default) are compared with
`redistribution=none` (the -A-R ablation), layer by layer, under the `context` and `query-aware` protocols,
with coverage on (default) and off, for the default scoring rows (`score_queries=text`: every row after
the media) and for all rows (`score_queries=all`, rows that include media queries). Prints one line per
setting: how many layers keep the same set.

    python benchmarks/ar_effect.py > benchmarks/ar-effect.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from acckv_cli.answer.session import ClipSession
from acckv_cli.media.decode import decode
from acckv_cli.methods import Budget, get_method
from acckv_cli.model.load import load_model

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CLIPS = ("flute_red_circle.mp4", "guitar_bell_flute.mp4", "drum_then_violin.mp4")
QUESTION = "What instrument plays?"


def kept(session, protocol, budget, **params):
    method = get_method("acckv", **params)
    cache = session.media_cache_for(protocol, method, budget)
    answer = session.answer(QUESTION, cache, protocol, method, budget, max_new_tokens=1)
    return [answer.kept[layer] for layer in sorted(answer.kept)]


def main() -> None:
    lm = load_model()
    budget = Budget(0.1)
    print(f"model: {lm.name}; budget {budget.describe()}; question {QUESTION!r}; same = layers whose kept set "
          f"with visible_count equals the one with none")
    totals: dict[tuple, list[int]] = {}
    for clip in CLIPS:
        session = ClipSession(lm, decode(SAMPLES / clip))
        for protocol in ("context", "query-aware"):
            for rows in ("text", "all"):
                for coverage in ("time", "none"):
                    params = dict(score_queries=rows, coverage=coverage)
                    ar = kept(session, protocol, budget, **params)
                    raw = kept(session, protocol, budget, redistribution="none", **params)
                    same = sum(torch.equal(a, b) for a, b in zip(ar, raw))
                    t = totals.setdefault((protocol, rows, coverage), [0, 0])
                    t[0] += same
                    t[1] += len(ar)
                    print(f"{clip:24} {protocol:11} rows={rows:4} coverage={coverage:4} same {same}/{len(ar)}")
    print("totals:")
    for (protocol, rows, coverage), (same, n) in totals.items():
        print(f"  {protocol:11} rows={rows:4} coverage={coverage:4} same {same}/{n}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
