"""Demo-model training pieces: answer-only labels and question turns isolated from each other."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from acckv_cli.demo import train as T


@pytest.fixture(scope="module")
def demo():
    thinker, processor = T.build_tiny_thinker(T.TinySpec(), corpus=T.demo_corpus(), vocab_size=640)
    processor.tokenizer.padding_side = "right"
    return thinker, processor


def batch(processor, turns, indices=(0, 1)):
    saved, T.MAX_TURNS = T.MAX_TURNS, turns
    try:
        return T.make_batch(processor, list(indices), np.random.default_rng(0), random.Random(0))
    finally:
        T.MAX_TURNS = saved


def test_labels_cover_only_answers(demo):
    _, processor = demo
    b = batch(processor, 3)
    vocab = set(T.answer_vocabulary()) | {"<|im_end|>"}
    for row in b["labels"]:
        tokens = processor.tokenizer.convert_ids_to_tokens(row[row != -100].tolist())
        assert len(tokens) == 6 and set(tokens) <= vocab  # 3 answers + 3 <|im_end|>


def test_isolated_single_turn_equals_plain_forward(demo):
    thinker, processor = demo
    b = batch(processor, 1)
    with torch.no_grad():
        plain = T.loss_on_answers(thinker, dict(b))
        isolated = T.loss_on_answers(thinker, dict(b), processor.tokenizer)
    assert torch.allclose(plain, isolated, atol=1e-6)


def test_later_turns_cannot_see_earlier_answers(demo):
    thinker, processor = demo
    b = batch(processor, 4, indices=(5,))
    inputs = T.isolate_turns(thinker, {k: v for k, v in b.items() if k != "labels"}, processor.tokenizer)
    answers = (b["labels"][0] != -100).nonzero().squeeze(1)
    first_answer, last_answer = int(answers[0]), int(answers[-2])
    changed = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in inputs.items()}
    changed["input_ids"][0, first_answer] = (changed["input_ids"][0, first_answer] + 1) % 300
    with torch.no_grad():
        a = thinker.model(**inputs, use_audio_in_video=True, use_cache=False).last_hidden_state
        c = thinker.model(**changed, use_audio_in_video=True, use_cache=False).last_hidden_state
    assert torch.allclose(a[0, last_answer], c[0, last_answer], atol=1e-5)
    assert not torch.allclose(a[0, first_answer + 1], c[0, first_answer + 1], atol=1e-5)
