"""SynthAVQA: a synthetic audio-video question-answering benchmark with exact ground truth.

Each clip (4–12 s) is a sequence of 1–3 *segments*; in a segment one coloured shape is on screen while
one instrument plays, so audio and video are aligned in time. Distractors — a shape on screen with no
sound, or a sound with no shape, placed in the gaps between segments — make time matter. Shapes,
colours and instruments are distinct within a clip, so every question has one short answer.

Question families:
  audio      needs only the sound   ("What instrument plays first?")
  video      needs only the picture ("What colour is the square?")
  alignment  needs both at the same moment ("What colour is the shape on screen when the drum plays?")

Everything is a pure function of (split, index): splits draw from disjoint seed ranges, so train,
validation and test never share a clip.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass

from acckv_cli.synth.events import INSTRUMENTS, SHAPES, ClipSpec, SoundEvent, VisualEvent

FAMILIES = ("audio", "video", "alignment")
SPLIT_SEED_BASE = {"train": 0, "validation": 10_000_000, "test": 20_000_000, "samples": 30_000_000}
ANSWER_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "white")
BACKGROUNDS = ("gray", "black")
PITCHES = {"flute": ("C5", "E5", "G5"), "clarinet": ("G4", "C4", "E4"), "violin": ("A4", "D5", "E5"),
           "guitar": ("E3", "A3", "B3"), "drum": ("G2", "C2", "D2"), "bell": ("C5", "G5", "E5")}
CLIP_SIZE = (320, 240)
CLIP_FPS = 10.0


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    family: str
    evidence: tuple[tuple[float, float], ...] = ()  # spans [start, end) in seconds that hold the answer


@dataclass(frozen=True)
class Example:
    """One clip and its questions; `key` is unique across splits."""

    split: str
    index: int
    spec: ClipSpec
    questions: tuple[QA, ...]

    @property
    def key(self) -> str:
        return f"{self.split}-{self.index:06d}"

    def to_dict(self) -> dict:
        return {"split": self.split, "index": self.index, "spec": self.spec.to_dict(),
                "questions": [asdict(q) for q in self.questions]}


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    shape: str
    colour: str
    instrument: str


def seed_for(split: str, index: int) -> int:
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; choose from {tuple(SPLIT_SEED_BASE)}")
    return SPLIT_SEED_BASE[split] + index


def make_example(split: str, index: int) -> Example:
    """The clip and questions of item `index` of `split` (deterministic)."""
    seed = seed_for(split, index)
    rng = random.Random(seed)
    duration = rng.randint(4, 12)
    n_segments = rng.choice((1, 2, 2, 3, 3)) if duration >= 6 else rng.choice((1, 2))
    segments = _segments(rng, duration, n_segments)
    visual, sound = _events(rng, segments)
    visual, sound = _add_distractor(rng, duration, segments, visual, sound)
    spec = ClipSpec(duration_s=duration, width=CLIP_SIZE[0], height=CLIP_SIZE[1], fps=CLIP_FPS,
                    background=rng.choice(BACKGROUNDS), visual_events=tuple(visual),
                    sound_events=tuple(sound), seed=seed)
    return Example(split, index, spec, tuple(questions_for(rng, segments, visual, sound)))


def _segments(rng: random.Random, duration: int, n: int) -> list[Segment]:
    """n aligned shape+instrument segments with gaps of at least 1 s between them."""
    shapes = rng.sample(SHAPES, n)
    colours = rng.sample(ANSWER_COLOURS, n)
    instruments = rng.sample(INSTRUMENTS, n)
    slot = duration / n
    out = []
    for i in range(n):
        length = rng.uniform(max(1.5, slot * 0.55), max(1.6, slot - 1.0))
        start = i * slot + rng.uniform(0.0, max(0.0, slot - length - 0.5))
        start = round(start, 2)
        end = round(min(start + length, (i + 1) * slot - 0.5, duration), 2)
        out.append(Segment(start, end, shapes[i], colours[i], instruments[i]))
    return out


def _events(rng: random.Random, segments: list[Segment]) -> tuple[list, list]:
    visual, sound = [], []
    for seg in segments:
        x0, y0 = rng.uniform(0.3, 0.7), rng.uniform(0.35, 0.65)
        moving = rng.random() < 0.5
        x1 = min(max(x0 + rng.uniform(-0.25, 0.25), 0.25), 0.75) if moving else None
        y1 = min(max(y0 + rng.uniform(-0.15, 0.15), 0.3), 0.7) if moving else None
        visual.append(VisualEvent(seg.shape, seg.colour, seg.start, seg.end, x0, y0, x1, y1,
                                  size=rng.uniform(0.35, 0.5)))
        sound.append(SoundEvent(seg.instrument, seg.start, seg.end, rng.choice(PITCHES[seg.instrument]),
                                gain=rng.uniform(0.7, 1.0)))
    return visual, sound


def _add_distractor(rng: random.Random, duration: int, segments: list[Segment], visual, sound):
    """Half the clips get one unaligned event in the largest gap: a silent shape or an unseen sound."""
    if rng.random() < 0.5:
        return visual, sound
    gap = _largest_gap(duration, segments)
    if gap is None:
        return visual, sound
    start, end = gap
    if rng.random() < 0.5:
        shape = rng.choice([s for s in SHAPES if s not in {g.shape for g in segments}] or [None])
        colour = rng.choice([c for c in ANSWER_COLOURS if c not in {g.colour for g in segments}])
        if shape is not None:
            visual = [*visual, VisualEvent(shape, colour, start, end, 0.5, 0.5, size=0.35)]
    else:
        instrument = rng.choice([i for i in INSTRUMENTS if i not in {g.instrument for g in segments}])
        sound = [*sound, SoundEvent(instrument, start, end, PITCHES[instrument][0], gain=0.8)]
    return visual, sound


def _largest_gap(duration: int, segments: list[Segment]) -> tuple[float, float] | None:
    edges = [0.0] + [x for s in segments for x in (s.start, s.end)] + [float(duration)]
    gaps = [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]
    start, end = max(gaps, key=lambda g: g[1] - g[0])
    if end - start < 1.2:
        return None
    return round(start + 0.2, 2), round(end - 0.2, 2)


def questions_for(rng: random.Random, segments: list[Segment], visual, sound) -> list[QA]:
    """One question per family, chosen among the templates that have a unique answer for this clip."""
    first_sound = min(sound, key=lambda e: e.start_s).instrument
    last_sound = max(sound, key=lambda e: e.start_s).instrument
    audio = [QA("What instrument plays first?", first_sound, "audio"),
             QA("What instrument plays last?", last_sound, "audio")]
    if len(sound) == 1:
        audio = [QA("What instrument plays?", sound[0].instrument, "audio")] * 2 + audio
    video = [QA(f"What colour is the {v.shape}?", v.colour, "video") for v in visual]
    video += [QA(f"What shape is {v.colour}?", v.shape, "video") for v in visual]
    seg = rng.choice(segments)
    alignment = [
        QA(f"What colour is the shape on screen when the {seg.instrument} plays?", seg.colour, "alignment"),
        QA(f"Which instrument plays while the {seg.shape} is visible?", seg.instrument, "alignment"),
        QA(f"What shape is on screen when the {seg.instrument} plays?", seg.shape, "alignment"),
    ]
    return [rng.choice(audio), rng.choice(video), rng.choice(alignment)]


def all_questions(example: Example) -> list[QA]:
    """Every question with a unique answer for this clip (training uses them for more signal per clip)."""
    spec = example.spec
    visual, sound = list(spec.visual_events), list(spec.sound_events)
    segments = [Segment(v.start_s, v.end_s, v.shape, v.colour, s.instrument)
                for v in visual for s in sound if (v.start_s, v.end_s) == (s.start_s, s.end_s)]
    out = [QA("What instrument plays first?", min(sound, key=lambda e: e.start_s).instrument, "audio"),
           QA("What instrument plays last?", max(sound, key=lambda e: e.start_s).instrument, "audio")]
    if len(sound) == 1:
        out.append(QA("What instrument plays?", sound[0].instrument, "audio"))
    for v in visual:
        out += [QA(f"What colour is the {v.shape}?", v.colour, "video"),
                QA(f"What shape is {v.colour}?", v.shape, "video")]
    for seg in segments:
        out += [QA(f"What colour is the shape on screen when the {seg.instrument} plays?", seg.colour, "alignment"),
                QA(f"Which instrument plays while the {seg.shape} is visible?", seg.instrument, "alignment"),
                QA(f"What shape is on screen when the {seg.instrument} plays?", seg.shape, "alignment")]
    return out


_FIRST = re.compile(r"What instrument plays (first|last)\?")
_SHAPE_COLOUR = re.compile(r"What colour is the (\w+)\?")
_COLOUR_SHAPE = re.compile(r"What shape is (\w+)\?")
_WHEN_PLAYS = re.compile(r"What (?:colour|shape) is (?:the shape )?on screen when the (\w+) plays\?")
_WHILE_VISIBLE = re.compile(r"Which instrument plays while the (\w+) is visible\?")


def question_evidence(spec: ClipSpec, question: str) -> tuple[float, float] | None:
    """The time span [start, end) in seconds that holds the answer to a SynthAVQA question, or None.

    audio questions: the sound event asked about; video questions: the shape asked about; alignment
    questions: the segment where the named sound and the shape on screen coincide. The evaluation uses
    it to measure whether a method kept the media entries the answer depends on.
    """
    sounds = sorted(spec.sound_events, key=lambda e: e.start_s)
    if question == "What instrument plays?" and len(sounds) == 1:
        return sounds[0].start_s, sounds[0].end_s
    if m := _FIRST.fullmatch(question):
        event = sounds[0] if m.group(1) == "first" else sounds[-1]
        return event.start_s, event.end_s
    if m := _SHAPE_COLOUR.fullmatch(question):
        event = next((v for v in spec.visual_events if v.shape == m.group(1)), None)
        return (event.start_s, event.end_s) if event else None
    if m := _COLOUR_SHAPE.fullmatch(question):
        event = next((v for v in spec.visual_events if v.colour == m.group(1)), None)
        return (event.start_s, event.end_s) if event else None
    if m := _WHEN_PLAYS.fullmatch(question):
        event = next((e for e in sounds if e.instrument == m.group(1)), None)
        return (event.start_s, event.end_s) if event else None
    if m := _WHILE_VISIBLE.fullmatch(question):
        event = next((v for v in spec.visual_events if v.shape == m.group(1)), None)
        return (event.start_s, event.end_s) if event else None
    return None


def answer_vocabulary() -> list[str]:
    """Every possible answer word."""
    return sorted({*ANSWER_COLOURS, *SHAPES, *INSTRUMENTS})


def question_corpus() -> list[str]:
    """Every question template instantiated, for training a tokenizer."""
    out = ["What instrument plays?", "What instrument plays first?", "What instrument plays last?"]
    for shape in SHAPES:
        out.append(f"Which instrument plays while the {shape} is visible?")
        out += [f"What colour is the {shape}?"]
    for colour in ANSWER_COLOURS:
        out.append(f"What shape is {colour}?")
    for instrument in INSTRUMENTS:
        out.append(f"What colour is the shape on screen when the {instrument} plays?")
        out.append(f"What shape is on screen when the {instrument} plays?")
    return out
