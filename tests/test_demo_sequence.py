"""The order / count / option targets of the demo model's second training stage (demo/sequence.py):
each label is checked against an independent reading of the clip and against the questions it serves."""

from __future__ import annotations

import functools
import random
import re

import numpy as np
import pytest
import torch

from acckv_cli.demo import data as D
from acckv_cli.demo import train as T
from acckv_cli.demo.auxiliary import INSTRUMENT_CLASSES
from acckv_cli.demo.sequence import MAX_COUNT, SequenceHeads, audio_sequence_targets, option_targets
from acckv_cli.evaluation.choices import LETTERS
from acckv_cli.synth.events import INSTRUMENTS, ClipSpec, SoundEvent
from acckv_cli.synth.sparse import COUNT_WORDS, make_sparse_example, questions_by_family


def at(seconds: float) -> int:
    return int(seconds * 25)  # the audio token whose 40 ms start at `seconds`


def test_previous_and_counts_on_a_hand_made_clip():
    spec = ClipSpec(8, sound_events=(SoundEvent("violin", 1.0, 1.5), SoundEvent("drum", 3.0, 3.4),
                                     SoundEvent("violin", 5.0, 5.5)))
    previous, counts = audio_sequence_targets(spec, 200)
    name = lambda k: INSTRUMENT_CLASSES[previous[at(k)]]  # noqa: E731
    assert [name(0.5), name(1.2), name(2.0), name(3.2), name(4.0), name(5.2), name(7.0)] == \
        ["none", "none", "violin", "violin", "drum", "drum", "violin"]
    violin, drum = INSTRUMENTS.index("violin"), INSTRUMENTS.index("drum")
    assert counts[at(0.5)].sum() == 0
    assert (counts[at(1.2), violin], counts[at(4.0), violin], counts[at(4.0), drum]) == (1, 1, 1)
    assert (counts[at(7.0), violin], counts[at(7.0), drum], counts[at(7.0)].sum()) == (2, 1, 3)


def test_counts_saturate_at_four():
    spec = ClipSpec(12, sound_events=tuple(SoundEvent("bell", s, s + 0.3) for s in range(1, 7)))
    _, counts = audio_sequence_targets(spec, 300)
    assert counts[-1, INSTRUMENTS.index("bell")] == MAX_COUNT


@pytest.mark.parametrize("index", range(6))
def test_the_labels_answer_the_order_and_count_questions(index):
    """An order question's answer sound carries previous = the asked instrument (fails if "previous" were
    the next sound); the last audio token's counts are the count questions' answers."""
    spec = make_sparse_example("sparse", "train", index).spec
    n = int(spec.duration_s * 25)
    previous, counts = audio_sequence_targets(spec, n)
    questions = questions_by_family(spec)
    for qa in questions["order"]:
        asked = qa.question.removeprefix("What plays right after the ").removesuffix("?")
        start, end = qa.evidence[1]  # the answer sound
        assert {INSTRUMENT_CLASSES[p] for p in previous[at(start) + 1:at(end)]} == {asked}
    for qa in questions["count"]:
        asked = qa.question.removeprefix("How many times does the ").removesuffix(" play?")
        assert COUNT_WORDS[counts[-1, INSTRUMENTS.index(asked)]] == qa.answer


@pytest.fixture(scope="module")
def demo():
    spec = T.TinySpec(feature_chunk_seconds=15, max_pixels=T.DEMO_SPEC.max_pixels)
    return T.build_tiny_thinker(spec, corpus=T.demo_corpus(), vocab_size=640)


def test_option_targets_flag_exactly_the_true_option(demo):
    _, processor = demo
    recipe = D.Recipe(mc_share=1.0, sequence_targets=True)
    saved = D.TURNS["sparse"]
    D.TURNS["sparse"] = 3
    try:
        b = D.clip_inputs(processor, "sparse", 2, np.random.default_rng(0), random.Random(0), recipe)
    finally:
        D.TURNS["sparse"] = saved
    at_, correct = b["sequence_targets"]["option_at"], b["sequence_targets"]["option_correct"]
    assert len(at_) == 3 * D.OPTIONS and int(correct.sum()) == 3
    ids = b["input_ids"].flatten()
    tokenizer = processor.tokenizer
    answers = tokenizer.convert_ids_to_tokens(b["labels"][0][b["labels"][0] != -100].tolist())[::2]
    for turn, answer in enumerate(answers):  # four options per turn, in order; the letter sits two tokens back
        options = slice(turn * D.OPTIONS, (turn + 1) * D.OPTIONS)
        letters = tokenizer.convert_ids_to_tokens(ids[at_[options] - 2].tolist())
        assert letters == list(LETTERS[:D.OPTIONS])
        assert [letters[i] for i in range(D.OPTIONS) if correct[options][i]] == [answer]


def test_sequence_losses_reach_the_decoder(demo):
    thinker, processor = demo
    recipe = D.Recipe(mc_share=0.5, sequence_targets=True)
    b = D.clip_inputs(processor, "sparse", 3, np.random.default_rng(0), random.Random(1), recipe)
    heads = SequenceHeads(thinker.config.text_config.hidden_size)
    loss, parts = T.loss_on_answers(thinker.train(), dict(b), processor.tokenizer, sequence_heads=heads,
                                    sequence_weight=0.3)
    assert {"audio_previous", "audio_counts", "option_correct"} <= set(parts)
    assert loss > parts["answer"] and all(np.isfinite(v) for v in parts.values())
    loss.backward()
    assert heads.audio_counts.weight.grad.abs().sum() > 0
    decoder = [p for n, p in thinker.named_parameters() if "layers.0.self_attn.q_proj.weight" in n and "audio" not in n
                and "visual" not in n]
    assert len(decoder) == 1 and decoder[0].grad.abs().sum() > 0


def test_recipe_round_trips_through_the_card():
    recipe = D.Recipe({"core": 0.2, "sparse": 0.5, "long": 0.3}, 0.5, ("order", "count"), True)
    assert D.Recipe.from_card(recipe.as_card()) == recipe
    assert D.Recipe.from_card({}) == D.Recipe()  # a v2 stage-1 card


def test_focus_asks_the_focus_families_first():
    questions = D.training_example("sparse", 5)[1]
    turns = D.chat(questions, random.Random(0), turns=4, mc_share=0.0, focus=("count",))
    asked = [t["content"] if isinstance(t["content"], str) else t["content"][1]["text"]
             for t in turns if t["role"] == "user"]
    n_count = sum(qa.family == "count" for qa in questions)
    assert all(q.startswith("How many times") for q in asked[:min(4, n_count)])


def test_option_targets_ignore_open_questions(demo):
    _, processor = demo
    ids = processor.tokenizer("What plays first?\nAnswer", return_tensors="pt")["input_ids"]
    at_, correct = option_targets(ids, torch.full_like(ids, -100), processor.tokenizer)
    assert len(at_) == 0 and len(correct) == 0


def lens_batch(processor, turns: int = 3):
    recipe = D.Recipe(mc_share=1.0, answer_lens=True)
    saved = D.TURNS["sparse"]
    D.TURNS["sparse"] = turns
    try:
        return D.clip_inputs(processor, "sparse", 2, np.random.default_rng(0), random.Random(0), recipe)
    finally:
        D.TURNS["sparse"] = saved


def test_answer_lens_targets_are_the_chosen_options_word_where_the_letter_is_predicted(demo):
    """Read back from the decoded prompt: the position after each target holds the labelled letter, and the
    target word is that letter's option text as a free answer spells it. Catches: the position of the letter
    itself (one too late), another option's word, a word with the option's leading space."""
    _, processor = demo
    tokenizer = processor.tokenizer
    b = lens_batch(processor)
    positions, words = b["lens_targets"]
    ids, labels = b["input_ids"].flatten(), b["labels"].flatten()
    assert len(positions) == 3
    for pos, word in zip(positions.tolist(), words.tolist()):
        letter = tokenizer.decode([int(ids[pos + 1])])
        assert labels[pos + 1] == ids[pos + 1] and letter in LETTERS
        turn = tokenizer.decode(ids[:pos + 1].tolist()).rsplit("<|im_start|>user", 1)[1]
        options = dict(re.findall(r"\n([A-Z])\. ([^\n]+)", turn))
        assert word == tokenizer(options[letter], add_special_tokens=False)["input_ids"][0]


def test_answer_lens_loss_reaches_the_lower_decoder(demo):
    thinker, processor = demo
    b = lens_batch(processor, turns=2)
    loss, parts = T.loss_on_answers(thinker.train(), dict(b), processor.tokenizer, lens_weight=1.0)
    assert "answer_lens" in parts and np.isfinite(parts["answer_lens"]) and loss > parts["answer"]
    loss.backward()
    decoder = [p for n, p in thinker.named_parameters() if "layers.0.self_attn.q_proj.weight" in n and "audio" not in n
               and "visual" not in n]
    assert decoder[0].grad.abs().sum() > 0


def test_lens_reads_every_layer_at_the_last_position(demo, monkeypatch):
    """`python -m acckv_cli.demo.lens` on the tiny model: one share per decoder layer for each way of asking,
    over the clip's three questions. Catches: the embeddings counted as a layer, or the letter read from
    a position other than the last."""
    from acckv_cli.demo import lens as L

    thinker, processor = demo
    monkeypatch.setattr(L, "load_thinker", lambda folder: (thinker.eval(), processor))
    result = L.lens("tiny", clips=1)
    layers = thinker.config.text_config.num_hidden_layers
    assert result["questions"] == 3
    assert [len(v) for v in result["answer_word_first_per_layer"].values()] == [layers, layers]
    assert all(0 <= x <= 1 for v in result["answer_word_first_per_layer"].values() for x in v)


def test_option_letter_targets_are_each_options_own_letter(demo):
    """Each target position is an option's first text token and its target the letter two tokens before it,
    in order A, B, C, D per turn. Catches: the letter token itself as the position, the next option's letter."""
    _, processor = demo
    tokenizer = processor.tokenizer
    b = lens_batch(processor)
    positions, letters = b["letter_targets"]
    ids = b["input_ids"].flatten()
    assert len(positions) == 3 * D.OPTIONS
    assert tokenizer.convert_ids_to_tokens(letters.tolist()) == list(LETTERS[:D.OPTIONS]) * 3
    assert torch.equal(ids[positions - 2], letters) and (ids[positions - 1] == tokenizer.convert_tokens_to_ids(".")).all()
    loss, parts = T.loss_on_answers(demo[0].train(), dict(b), tokenizer, letter_weight=1.0)
    assert "option_letter" in parts and loss > parts["answer"]
