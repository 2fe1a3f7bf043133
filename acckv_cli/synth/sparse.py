"""Sparse SynthAVQA: the evidence for each answer is a small share of the media, as in real AV benchmarks.

Core SynthAVQA spreads each answer over seconds of one large shape and one sustained tone, so almost any 5 %
of the media still holds it. Here a clip (8–30 s for the `sparse` suite, 60–180 s for `long`) holds:

* 3–6 (long: 6–10) **brief sounds** of 0.25–0.8 s among silence, instruments repeating (one of them 1–4
  times, for counting), each start at least 1 s after the previous one;
* 2–3 (long: 3–4) **shapes**, never two at once, each either small (0.16–0.24 of the frame's short side, on
  screen 1.5–3 s) or normal-sized and brief (0.3–0.4, on screen 0.6–1.2 s); one of them is on screen while
  exactly one sound plays (an aligned moment), the others fall where they fall.

Question families, one word each, every question with the spans (seconds, [start, end)) that hold its answer:

  audio      "What instrument plays first?" / "... last?"             the first / last sound
  order      "What plays right after the violin?"                     that sound and the next one
  count      "How many times does the drum play?" ("one" … "four")    every sound of that instrument
  video      "What colour is the star?" / "What shape is red?"        the shape's time on screen
  alignment  "Which instrument plays when the star appears?"          the shape's time on screen
             "What colour is the shape on screen when the bell plays?" the sound

Everything is a pure function of (suite, split, index); seeds are disjoint from every other generator's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from acckv_cli.synth.avqa import ANSWER_COLOURS, BACKGROUNDS, CLIP_FPS, CLIP_SIZE, PITCHES, QA, Example
from acckv_cli.synth.events import INSTRUMENTS, SHAPES, ClipSpec, SoundEvent, VisualEvent

SPARSE_FAMILIES = ("audio", "order", "count", "video", "alignment")
COUNT_WORDS = ("zero", "one", "two", "three", "four")


@dataclass(frozen=True)
class SuiteShape:
    """Clip length and event counts of a suite."""

    min_s: int
    max_s: int
    sounds: tuple[int, int]
    shapes: tuple[int, int]


SUITES = {"sparse": SuiteShape(8, 30, (3, 6), (2, 3)), "long": SuiteShape(60, 180, (6, 10), (3, 4))}
SEED_BASE = {  # every range 10 M wide, disjoint from SynthAVQA (0–40 M) and long SynthAVQA v1 (40–60 M)
    "sparse": {"train": 100_000_000, "validation": 110_000_000, "test": 120_000_000},
    "long": {"train": 130_000_000, "validation": 140_000_000, "test": 150_000_000},
}
SOUND_S = (0.25, 0.8)
SOUND_SPACING_S = 1.0          # between consecutive sound starts: ≥ 0.2 s of silence after the longest sound
SMALL = ((0.16, 0.24), (1.5, 3.0))   # (size range, seconds on screen)
BRIEF = ((0.30, 0.40), (0.6, 1.2))   # ≥ 0.6 s: every such span holds at least one frame sampled at 2 fps


def seed_for(suite: str, split: str, index: int) -> int:
    if suite not in SEED_BASE:
        raise ValueError(f"unknown suite {suite!r}; choose from {tuple(SEED_BASE)}")
    if split not in SEED_BASE[suite]:
        raise ValueError(f"unknown split {split!r}; choose from {tuple(SEED_BASE[suite])}")
    if not 0 <= index < 10_000_000:
        raise ValueError(f"index must be in [0, 10 000 000), got {index}")
    return SEED_BASE[suite][split] + index


def make_sparse_example(suite: str, split: str, index: int) -> Example:
    """The clip and its questions (one per family) of item `index` of `split` in `suite` (deterministic)."""
    seed = seed_for(suite, split, index)
    rng = random.Random(seed)
    shape_of = SUITES[suite]
    duration = rng.randint(shape_of.min_s, shape_of.max_s)
    sounds = _sounds(rng, duration, rng.randint(*shape_of.sounds))
    background = rng.choice(BACKGROUNDS)
    visual = _shapes(rng, duration, sounds, rng.randint(*shape_of.shapes))
    spec = ClipSpec(duration_s=duration, width=CLIP_SIZE[0], height=CLIP_SIZE[1], fps=CLIP_FPS, background=background,
                    visual_events=tuple(visual), sound_events=tuple(sounds), seed=seed)
    questions = [rng.choice(by_family) for by_family in questions_by_family(spec).values()]
    return Example(f"{suite}-{split}", index, spec, tuple(questions))


def _sounds(rng: random.Random, duration: int, n: int) -> list[SoundEvent]:
    """n brief sounds in time order; one instrument plays 1–4 times, and at least one instrument plays once
    and is not last (so "what plays right after X?" has an answer)."""
    while True:
        starts = sorted(round(rng.uniform(0.3, duration - 1.0), 2) for _ in range(n))
        if all(b - a >= SOUND_SPACING_S for a, b in zip(starts, starts[1:])):
            break
    while True:
        counted = rng.choice(INSTRUMENTS)
        repeats = rng.randint(1, min(4, n - 1))
        others = [rng.choice([i for i in INSTRUMENTS if i != counted]) for _ in range(n - repeats)]
        names = [counted] * repeats + others
        rng.shuffle(names)
        if any(names.count(x) == 1 for x in names[:-1]):
            break
    return [SoundEvent(name, start, round(start + rng.uniform(*SOUND_S), 2), rng.choice(PITCHES[name]),
                       gain=rng.uniform(0.7, 1.0)) for name, start in zip(names, starts)]


def _shapes(rng: random.Random, duration: int, sounds: list[SoundEvent], n: int) -> list[VisualEvent]:
    """n distinct shapes and colours, never two on screen at once; the first covers exactly one sound."""
    shapes, colours = rng.sample(SHAPES, n), rng.sample(ANSWER_COLOURS, n)
    spans = [_aligned_span(rng, duration, sounds)]
    for _ in range(200 * n):
        if len(spans) == n:
            break
        sizes, seconds = rng.choice((SMALL, BRIEF))
        length = rng.uniform(*seconds)
        start = round(rng.uniform(0.0, duration - length), 2)
        span = (start, round(start + length, 2), rng.uniform(*sizes))
        if all(span[1] + 0.5 <= s[0] or s[1] + 0.5 <= span[0] for s in spans):
            spans.append(span)
    spans = sorted(spans[:n], key=lambda s: s[0])
    out = []
    for (start, end, size), shape, colour in zip(spans, shapes, colours):
        x, y = rng.uniform(0.2, 0.8), rng.uniform(0.25, 0.75)
        out.append(VisualEvent(shape, colour, start, end, x, y, size=size))
    return out


def _aligned_span(rng: random.Random, duration: int, sounds: list[SoundEvent]) -> tuple[float, float, float]:
    """A shape's span around one sound (preferably of an instrument heard once), overlapping no other sound."""
    once = [s for s in sounds if sum(o.instrument == s.instrument for o in sounds) == 1]
    sound = rng.choice(once or sounds)
    k = sounds.index(sound)
    lo = sounds[k - 1].end_s + 0.05 if k else 0.0
    hi = sounds[k + 1].start_s - 0.05 if k + 1 < len(sounds) else float(duration)
    sizes, seconds = rng.choice((SMALL, BRIEF))
    sound_s = sound.end_s - sound.start_s
    length = max(rng.uniform(*seconds), sound_s + 0.1)   # ≤ 1.2 s for a brief shape: sounds last ≤ 0.8 s
    before = rng.uniform(0.05, length - sound_s - 0.05)
    start = round(max(lo, sound.start_s - before), 2)
    end = round(max(min(hi, start + length), sound.end_s + 0.05), 2)  # lo/hi keep ≥ 0.15 s around the sound
    return start, end, rng.uniform(*sizes)


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def span(event) -> tuple[float, float]:
    return event.start_s, event.end_s


def questions_by_family(spec: ClipSpec) -> dict[str, list[QA]]:
    """Every question with a unique one-word answer for this clip, by family, each with its evidence."""
    sounds = sorted(spec.sound_events, key=lambda e: e.start_s)
    names = [s.instrument for s in sounds]
    visual = list(spec.visual_events)
    out: dict[str, list[QA]] = {f: [] for f in SPARSE_FAMILIES}
    out["audio"] = [QA("What instrument plays first?", names[0], "audio", (span(sounds[0]),)),
                    QA("What instrument plays last?", names[-1], "audio", (span(sounds[-1]),))]
    for k, sound in enumerate(sounds[:-1]):
        if names.count(sound.instrument) == 1:
            out["order"].append(QA(f"What plays right after the {sound.instrument}?", names[k + 1], "order",
                                   (span(sound), span(sounds[k + 1]))))
    for name in sorted(set(names)):
        hits = tuple(span(s) for s in sounds if s.instrument == name)
        if len(hits) < len(COUNT_WORDS):
            out["count"].append(QA(f"How many times does the {name} play?", COUNT_WORDS[len(hits)], "count", hits))
    for v in visual:
        out["video"] += [QA(f"What colour is the {v.shape}?", v.colour, "video", (span(v),)),
                         QA(f"What shape is {v.colour}?", v.shape, "video", (span(v),))]
        heard = [s for s in sounds if _overlaps(span(v), span(s))]
        if len(heard) == 1:
            out["alignment"].append(QA(f"Which instrument plays when the {v.shape} appears?", heard[0].instrument,
                                       "alignment", (span(v),)))
    for s in sounds:
        seen = [v for v in visual if _overlaps(span(v), span(s))]
        if names.count(s.instrument) == 1 and len(seen) == 1:
            out["alignment"].append(QA(f"What colour is the shape on screen when the {s.instrument} plays?",
                                       seen[0].colour, "alignment", (span(s),)))
    return out


def all_sparse_questions(example: Example) -> list[QA]:
    """Every question of the clip (training asks them all for more signal per clip)."""
    return [qa for family in questions_by_family(example.spec).values() for qa in family]


def sparse_question_corpus() -> list[str]:
    """Every question template instantiated, for a tokenizer."""
    out = ["What instrument plays first?", "What instrument plays last?", *COUNT_WORDS]
    for name in INSTRUMENTS:
        out += [f"What plays right after the {name}?", f"How many times does the {name} play?",
                f"What colour is the shape on screen when the {name} plays?"]
    for shape in SHAPES:
        out += [f"What colour is the {shape}?", f"Which instrument plays when the {shape} appears?"]
    out += [f"What shape is {colour}?" for colour in ANSWER_COLOURS]
    return out
