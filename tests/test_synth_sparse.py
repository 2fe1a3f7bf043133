"""Sparse and long SynthAVQA: deterministic, disjoint splits, brief events, and evidence spans that are exact.

Every answer and evidence span is recomputed here from the clip's events by independent code, so a
generator that mislabels a question (a wrong count, the wrong "next" sound, a span that misses the event)
fails; the rendered soundtrack is checked to be loud inside the sounds' spans and silent between them.
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from acckv_cli.synth import sparse
from acckv_cli.synth.audio import MODEL_RATE, render_audio
from acckv_cli.synth.avqa import SPLIT_SEED_BASE
from acckv_cli.synth.long import LONG_SEED_BASE
from acckv_cli.synth.sparse import COUNT_WORDS, SUITES, make_sparse_example, questions_by_family, seed_for

EXAMPLES = [make_sparse_example(suite, split, i) for suite in SUITES for split in ("train", "validation", "test")
            for i in range(12 if suite == "sparse" else 3)]


def test_generation_is_deterministic():
    for suite in SUITES:
        a, b = make_sparse_example(suite, "test", 5), make_sparse_example(suite, "test", 5)
        assert a.spec == b.spec and a.questions == b.questions
        assert make_sparse_example(suite, "test", 6).spec != a.spec


def test_seed_ranges_are_disjoint_from_each_other_and_from_the_other_generators():
    width = 10_000_000
    ranges = [(base, base + width) for base in SPLIT_SEED_BASE.values()]
    ranges += [(base, base + width) for base in LONG_SEED_BASE.values()]
    ranges += [(seed_for(s, split, 0), seed_for(s, split, width - 1) + 1) for s in SUITES
               for split in ("train", "validation", "test")]
    ranges.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(ranges, ranges[1:]))
    with pytest.raises(ValueError):
        seed_for("sparse", "test", width)  # would spill into the next range


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.key)
def test_events_are_brief_and_shapes_never_overlap(example):
    spec, shape_of = example.spec, SUITES[example.split.split("-")[0]]
    assert shape_of.min_s <= spec.duration_s <= shape_of.max_s
    sounds = sorted(spec.sound_events, key=lambda e: e.start_s)
    assert all(0.25 <= s.end_s - s.start_s <= 0.8 + 1e-9 for s in sounds)
    assert all(b.start_s - a.start_s >= 1.0 - 1e-9 for a, b in zip(sounds, sounds[1:]))
    shapes = sorted(spec.visual_events, key=lambda e: e.start_s)
    assert all(a.end_s <= b.start_s for a, b in zip(shapes, shapes[1:]))
    for v in shapes:
        assert v.end_s - v.start_s >= 0.6 - 1e-9
        assert v.size <= 0.24 + 1e-9 or v.end_s - v.start_s <= 1.2 + 1e-9  # small, or on screen briefly
        frames_inside = [k / 2 for k in range(int(spec.duration_s * 2) + 1) if v.start_s <= k / 2 < v.end_s]
        assert frames_inside, "a shape no frame sampled at 2 fps shows"


def _independent_answer(spec, question: str):
    """(answer, evidence) recomputed from the events, without the generator's code."""
    sounds = sorted(spec.sound_events, key=lambda e: e.start_s)
    shapes = list(spec.visual_events)
    span = lambda e: (e.start_s, e.end_s)  # noqa: E731
    overlap = lambda a, b: a.start_s < b.end_s and b.start_s < a.end_s  # noqa: E731
    words = question.rstrip("?").split()
    if question == "What instrument plays first?":
        return sounds[0].instrument, (span(sounds[0]),)
    if question == "What instrument plays last?":
        return sounds[-1].instrument, (span(sounds[-1]),)
    if question.startswith("What plays right after the "):
        k = [s.instrument for s in sounds].index(words[-1])
        return sounds[k + 1].instrument, (span(sounds[k]), span(sounds[k + 1]))
    if question.startswith("How many times does the "):
        hits = [s for s in sounds if s.instrument == words[-2]]
        return COUNT_WORDS[len(hits)], tuple(span(s) for s in hits)
    if question.startswith("What colour is the shape on screen when the "):
        sound = next(s for s in sounds if s.instrument == words[-2])
        shape = next(v for v in shapes if overlap(v, sound))
        return shape.colour, (span(sound),)
    if question.startswith("What colour is the "):
        shape = next(v for v in shapes if v.shape == words[-1])
        return shape.colour, (span(shape),)
    if question.startswith("What shape is "):
        shape = next(v for v in shapes if v.colour == words[-1])
        return shape.shape, (span(shape),)
    if question.startswith("Which instrument plays when the "):
        shape = next(v for v in shapes if v.shape == words[-2])
        heard = [s for s in sounds if overlap(s, shape)]
        assert len(heard) == 1
        return heard[0].instrument, (span(shape),)
    raise AssertionError(f"unknown template: {question}")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.key)
def test_every_answer_and_evidence_span_is_exact(example):
    families = questions_by_family(example.spec)
    assert all(families[f] for f in sparse.SPARSE_FAMILIES), "every family must have a question"
    assert [qa.family for qa in example.questions] == list(sparse.SPARSE_FAMILIES)
    for qa in (qa for family in families.values() for qa in family):
        assert (qa.answer, qa.evidence) == _independent_answer(example.spec, qa.question), qa.question


def test_evidence_is_a_small_share_of_the_clip():
    shares = [sum(e - s for s, e in qa.evidence) / ex.spec.duration_s for ex in EXAMPLES for qa in ex.questions]
    assert statistics.median(shares) < 0.10


def test_brief_sounds_are_heard_inside_their_spans_and_nowhere_else():
    example = make_sparse_example("sparse", "test", 3)
    audio = render_audio(example.spec, MODEL_RATE)
    rms = lambda a, b: float(np.sqrt(np.mean(audio[int(a * MODEL_RATE):int(b * MODEL_RATE)] ** 2)))  # noqa: E731
    spans = sorted((s.start_s, s.end_s) for s in example.spec.sound_events)
    loud = min(rms(s, e) for s, e in spans)
    gaps = [(e + 0.15, s2 - 0.05) for (_, e), (s2, _) in zip(spans, spans[1:]) if s2 - e > 0.3]
    assert gaps and loud > 20 * max(rms(a, b) for a, b in gaps)
