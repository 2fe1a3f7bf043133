"""Long SynthAVQA: 60–120-s clips whose events can be anywhere in time, for streaming evaluation.

A long clip holds 2–3 aligned segments (one coloured shape on screen while one instrument plays, as in
SynthAVQA) placed at random in the clip, at least one of them starting after 30 s (beyond Qwen2.5-Omni's
30-s audio window and the demo model's 15-s one), plus, in half the clips, a 2–4-s distractor (a silent shape or
an unseen sound). Between events the screen is empty and the soundtrack silent. Questions are SynthAVQA's
three families (audio, video, alignment), one each, from the same templates, so answers are exact.

Everything is a pure function of (split, index), with seeds disjoint from SynthAVQA's splits.

    python -m acckv_cli.synth.long --split test --n 20 --out .acckv/synthavqa-long

writes the mp4 files and `manifest.jsonl` (video, question, answer, family, evidence) for
`acckv eval --manifest`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from acckv_cli.synth.avqa import (ANSWER_COLOURS, BACKGROUNDS, CLIP_FPS, CLIP_SIZE, PITCHES, Example, Segment, _events,
                                  question_evidence, questions_for)
from acckv_cli.synth.events import INSTRUMENTS, SHAPES, ClipSpec, SoundEvent, VisualEvent

LONG_SEED_BASE = {"validation": 40_000_000, "test": 50_000_000}
LATE_S = 30.0     # at least one segment starts after this (audio beyond a 30-s window)
MIN_S, MAX_S = 60, 120


def make_long_example(split: str, index: int, min_s: int = MIN_S, max_s: int = MAX_S) -> Example:
    """The long clip and questions of item `index` of `split` (deterministic)."""
    if split not in LONG_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; choose from {tuple(LONG_SEED_BASE)}")
    seed = LONG_SEED_BASE[split] + index
    rng = random.Random(seed)
    duration = rng.randint(min_s, max_s)
    segments = _long_segments(rng, duration, rng.choice((2, 3)))
    visual, sound = _events(rng, segments)
    visual, sound = _distractor(rng, duration, segments, visual, sound)
    spec = ClipSpec(duration_s=duration, width=CLIP_SIZE[0], height=CLIP_SIZE[1], fps=CLIP_FPS,
                    background=rng.choice(BACKGROUNDS), visual_events=tuple(visual), sound_events=tuple(sound),
                    seed=seed)
    return Example(f"long-{split}", index, spec, tuple(questions_for(rng, segments, visual, sound)))


def _long_segments(rng: random.Random, duration: int, n: int) -> list[Segment]:
    """n segments of 2–5 s at random times, ≥ 2 s apart, sorted, one starting after `LATE_S`."""
    shapes, colours, instruments = rng.sample(SHAPES, n), rng.sample(ANSWER_COLOURS, n), rng.sample(INSTRUMENTS, n)
    while True:
        lengths = [round(rng.uniform(2.0, 5.0), 2) for _ in range(n)]
        starts = sorted(round(rng.uniform(0.5, duration - 5.5), 2) for _ in range(n))
        spaced = all(b >= a + la + 2.0 for a, b, la in zip(starts, starts[1:], lengths))
        if spaced and max(starts) > LATE_S:
            break
    return [Segment(s, round(s + la, 2), shapes[i], colours[i], instruments[i])
            for i, (s, la) in enumerate(zip(starts, lengths))]


def _distractor(rng: random.Random, duration: int, segments: list[Segment], visual, sound):
    """Half the clips get one unaligned 2–4-s event in the largest gap: a silent shape or an unseen sound."""
    if rng.random() < 0.5:
        return visual, sound
    edges = [0.0] + [x for s in segments for x in (s.start, s.end)] + [float(duration)]
    start, end = max(((edges[i], edges[i + 1]) for i in range(0, len(edges), 2)), key=lambda g: g[1] - g[0])
    if end - start < 3.0:
        return visual, sound
    length = min(rng.uniform(2.0, 4.0), end - start - 1.0)
    t0 = round(rng.uniform(start + 0.5, end - 0.5 - length), 2)
    t1 = round(t0 + length, 2)
    if rng.random() < 0.5:
        shape = rng.choice([s for s in SHAPES if s not in {g.shape for g in segments}])
        colour = rng.choice([c for c in ANSWER_COLOURS if c not in {g.colour for g in segments}])
        return [*visual, VisualEvent(shape, colour, t0, t1, 0.5, 0.5, size=0.35)], sound
    instrument = rng.choice([i for i in INSTRUMENTS if i not in {g.instrument for g in segments}])
    return visual, [*sound, SoundEvent(instrument, t0, t1, PITCHES[instrument][0], gain=0.8)]


def write_long_set(split: str, n: int, out: Path) -> Path:
    """Render `n` long clips of `split` into `out` and write `out/manifest.jsonl`; returns its path."""
    from acckv_cli.synth.render import write_mp4

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n):
        example = make_long_example(split, index)
        clip = out / f"{example.key}.mp4"
        if not clip.exists():
            write_mp4(example.spec, clip)
        for k, qa in enumerate(example.questions):
            rows.append({"id": f"{example.key}-q{k}", "video": clip.name, "question": qa.question,
                         "answer": qa.answer, "family": qa.family, "duration_s": example.spec.duration_s,
                         "evidence": question_evidence(example.spec, qa.question)})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write long SynthAVQA clips (60–120 s) and their manifest.")
    parser.add_argument("--split", default="test", choices=sorted(LONG_SEED_BASE))
    parser.add_argument("--n", type=int, default=20, help="clips (3 questions each)")
    parser.add_argument("--out", default=".acckv/synthavqa-long")
    args = parser.parse_args(argv)
    print(write_long_set(args.split, args.n, Path(args.out)))


if __name__ == "__main__":
    main()
