"""Demo-model training pieces: answer-only labels, isolated question turns, multiple-choice turns, the
deterministic step plan that makes resuming exact, deepening that keeps the function, checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from acckv_cli.demo import checkpoint as C
from acckv_cli.demo import data as D
from acckv_cli.demo import train as T
from acckv_cli.evaluation.choices import LETTERS, parse_choice


@pytest.fixture(scope="module")
def demo():
    # a 15-s audio window, as the demo model has: sparse clips longer than that arrive as feature windows
    spec = T.TinySpec(feature_chunk_seconds=15, max_pixels=T.DEMO_SPEC.max_pixels)
    thinker, processor = T.build_tiny_thinker(spec, corpus=T.demo_corpus(), vocab_size=640)
    return thinker, processor


def clip(processor, turns, suite="core", index=0, mc_share=0.0, monkeypatch=None, mc_answer="letter"):
    """One training clip's inputs with `turns` questions, `mc_share` of them as multiple choice."""
    saved = D.TURNS[suite]
    D.TURNS[suite] = turns
    try:
        return D.clip_inputs(processor, suite, index, np.random.default_rng(0), random.Random(0),
                             D.Recipe(mc_share=mc_share, mc_answer=mc_answer))
    finally:
        D.TURNS[suite] = saved


def test_labels_cover_only_answers(demo):
    _, processor = demo
    b = clip(processor, 3)
    vocab = set(T.answer_vocabulary()) | {"<|im_end|>"}
    for row in b["labels"]:
        tokens = processor.tokenizer.convert_ids_to_tokens(row[row != -100].tolist())
        assert len(tokens) == 6 and set(tokens) <= vocab  # 3 answers + 3 <|im_end|>


def test_multiple_choice_turns_answer_with_the_letter_of_the_true_option(demo):
    _, processor = demo
    b = clip(processor, 3, mc_share=1.0)
    tokens = processor.tokenizer.convert_ids_to_tokens(b["labels"][0][b["labels"][0] != -100].tolist())
    assert [t for t in tokens if t != "<|im_end|>"] and all(t in LETTERS[:D.OPTIONS] or t == "<|im_end|>"
                                                            for t in tokens)
    rng = random.Random(3)
    for qa in D.training_example("sparse", 4)[1]:
        text, letter = D.as_choice(qa, rng)
        options = [line[3:] for line in text.splitlines()[1:-1]]
        assert len(set(options)) == D.OPTIONS and options[LETTERS.index(letter)] == qa.answer


def test_multiple_choice_turns_can_answer_with_the_option_text_which_eval_reads_as_that_option(demo):
    _, processor = demo
    as_letters, as_texts = clip(processor, 3, mc_share=1.0), clip(processor, 3, mc_share=1.0, mc_answer="text")
    # same prompts (the options are drawn identically), only the targets differ
    assert (as_letters["input_ids"].shape != as_texts["input_ids"].shape
            or not torch.equal(as_letters["labels"], as_texts["labels"]))
    tokens = processor.tokenizer.convert_ids_to_tokens(as_texts["labels"][0][as_texts["labels"][0] != -100].tolist())
    assert not set(tokens) & set(LETTERS[:D.OPTIONS])
    for qa in D.training_example("sparse", 4)[1]:
        (text, letter), (same_text, target) = D.as_choice(qa, random.Random(3)), D.as_choice(qa, random.Random(3), "text")
        options = [line[3:] for line in text.splitlines()[1:-1]]
        assert same_text == text and target == qa.answer
        assert parse_choice(target, options) == LETTERS.index(letter)
    with pytest.raises(ValueError, match="mc_answer"):
        D.Recipe(mc_answer="word")


def test_isolated_single_turn_equals_plain_forward(demo):
    thinker, processor = demo
    b = clip(processor, 1)
    with torch.no_grad():
        plain, _ = T.loss_on_answers(thinker, dict(b))
        isolated, _ = T.loss_on_answers(thinker, dict(b), processor.tokenizer)
    assert torch.allclose(plain, isolated, atol=1e-6)


def test_later_turns_cannot_see_earlier_answers(demo):
    thinker, processor = demo
    b = clip(processor, 4, suite="sparse", index=5)
    inputs = T.isolate_turns(thinker, {k: v for k, v in b.items() if k not in ("labels", "aux_targets")},
                             processor.tokenizer)
    answers = (b["labels"][0] != -100).nonzero().squeeze(1)
    first_answer, last_answer = int(answers[0]), int(answers[-2])
    changed = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in inputs.items()}
    changed["input_ids"][0, first_answer] = (changed["input_ids"][0, first_answer] + 1) % 300
    with torch.no_grad():
        a = thinker.model(**inputs, use_audio_in_video=True, use_cache=False).last_hidden_state
        c = thinker.model(**changed, use_audio_in_video=True, use_cache=False).last_hidden_state
    assert torch.allclose(a[0, last_answer], c[0, last_answer], atol=1e-5)
    assert not torch.allclose(a[0, first_answer + 1], c[0, first_answer + 1], atol=1e-5)


def test_auxiliary_targets_line_up_with_encoder_outputs(demo):
    """One label per merger output and per audio-tower output, or cross-entropy would raise; the sparse clip
    is longer than the model's 15-s audio window, so its soundtrack arrives as two feature windows."""
    thinker, processor = demo
    b = clip(processor, 2, suite="sparse", index=1)
    assert b["input_features"].shape[0] == 2
    heads = T.AuxiliaryHeads(thinker.config.text_config.hidden_size)
    loss, parts = T.loss_on_answers(thinker, dict(b), processor.tokenizer, heads, aux_weight=0.2)
    assert set(parts) == {"answer", "object_shape", "video_colour", "audio_instrument", "audio_sees_shape",
                          "audio_sees_colour"}
    assert loss > parts["answer"] and all(np.isfinite(v) for v in parts.values())
    loss.backward()
    assert heads.object_shape.weight.grad.abs().sum() > 0
    assert thinker.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0


def test_training_frames_have_the_size_inference_decodes_files_at():
    """Rendered training frames must reach the processor at the size `acckv` decodes an mp4 at, or the
    model trains on one token grid (6×5 per frame pair) and is asked on another (7×5)."""
    from acckv_cli.media.decode import decode
    from acckv_cli.synth.render import render_frames

    samples = Path(__file__).resolve().parent.parent / "samples"
    decoded = decode(samples / "flute_red_circle.mp4", fps=T.FPS, max_pixels=T.DEMO_SPEC.max_pixels)
    from dataclasses import replace
    from acckv_cli.synth.avqa import make_example
    spec = replace(make_example("samples", 1881).spec, fps=T.FPS)
    assert T.as_decoded(render_frames(spec)).shape == decoded.frames.shape


def test_every_step_is_a_pure_function_of_seed_and_step(demo):
    """A resumed run must see exactly the clips and questions an uninterrupted run would."""
    _, processor = demo
    plans = [D.step_plan(0, s) for s in range(300)]
    assert plans == [D.step_plan(0, s) for s in range(300)]
    assert {suite for suite, _ in plans} == set(D.SUITE_MIX)
    seen = [(suite, i) for suite, indices in plans for i in indices]
    assert len(seen) == len(set(seen))  # no clip twice
    step = next(s for s, (suite, _) in enumerate(plans) if suite == "sparse")
    a, b = D.step_inputs(processor, 0, step)[1], D.step_inputs(processor, 0, step)[1]
    assert all(torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["pixel_values_videos"],
                                                                            y["pixel_values_videos"]) for x, y in zip(a, b))


def test_deepening_keeps_the_function_and_adds_layers(demo):
    thinker, processor = demo
    deeper = C.deepen(thinker, 5)
    assert deeper.config.text_config.num_hidden_layers == 5
    assert C.insertion_plan(4, 6) == [0, 1, None, 2, 3, None]
    b = clip(processor, 2, suite="sparse", index=2)
    with torch.no_grad():
        before, _ = T.loss_on_answers(thinker.eval(), dict(b), processor.tokenizer)
        after, _ = T.loss_on_answers(deeper.eval(), dict(b), processor.tokenizer)
    assert torch.allclose(before, after, atol=1e-5)
    new = C.insertion_plan(3, 5).index(None)
    prefix = C.decoder_prefix(deeper.state_dict())
    assert deeper.state_dict()[f"{prefix}{new}.self_attn.o_proj.weight"].abs().sum() == 0


def test_a_checkpoint_resumes_the_weights_optimizer_and_step(demo, tmp_path):
    thinker, processor = demo
    heads = T.AuxiliaryHeads(thinker.config.text_config.hidden_size)
    opt, params = T.optimizer_for(thinker, heads, 1e-3)
    loss, _ = T.loss_on_answers(thinker.train(), dict(clip(processor, 1)), processor.tokenizer, heads, 0.3)
    loss.backward()
    opt.step()
    C.save_checkpoint(tmp_path, thinker, processor, opt, heads, 7, {"steps": 10, "history": []})
    C.save_checkpoint(tmp_path, thinker, processor, opt, heads, 8, {"steps": 10, "history": []})  # replaces it
    loaded, _, state, card = C.load_checkpoint(tmp_path)
    assert state["step"] == 8 and card["steps"] == 10
    assert all(torch.equal(a, b) for a, b in zip(thinker.state_dict().values(), loaded.state_dict().values()))
    assert state["optimizer"]["state"] and state["heads"].keys() == heads.state_dict().keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no temporary folder left behind


def _end_loss_with_full_media(thinker, processor, b) -> torch.Tensor:
    """Independent reference: the isolated forward that training uses, scored at the <|im_end|> targets only."""
    labels = b["labels"]
    inputs = T.isolate_turns(thinker, {k: v for k, v in b.items() if k not in ("labels", "aux_targets")},
                             processor.tokenizer)
    hidden = thinker.model(**inputs, use_audio_in_video=True, use_cache=False).last_hidden_state[:, :-1]
    target = labels[:, 1:]
    ends = target == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    return torch.nn.functional.cross_entropy(thinker.lm_head(hidden[ends]).float(), target[ends])


def test_stop_loss_scores_only_the_closing_tokens_and_hides_media_from_the_turns(demo, monkeypatch):
    from acckv_cli.demo import losses as L
    thinker, processor = demo
    b = clip(processor, 3, suite="sparse", index=2)
    inputs = {k: v for k, v in b.items() if k not in ("labels", "aux_targets")}
    with torch.no_grad():
        reference = _end_loss_with_full_media(thinker, processor, b)
        monkeypatch.setattr(L, "STOP_KEEP", (1.0, 1.0))  # nothing hidden: exactly the reference
        seen_all = L.stop_loss(thinker, dict(inputs), b["labels"], processor.tokenizer)
        monkeypatch.setattr(L, "STOP_KEEP", (0.0, 0.0))  # every media key hidden from the question turns
        seen_none = L.stop_loss(thinker, dict(inputs), b["labels"], processor.tokenizer)
        again = L.stop_loss(thinker, dict(inputs), b["labels"], processor.tokenizer)
        # the same with every media key masked out of the question turns' rows, built here element by element
        turn = L.turn_map(b["input_ids"], b["attention_mask"].bool(), processor.tokenizer)[0].tolist()
        ids = b["input_ids"][0].tolist()
        media = {thinker.config.audio_token_id, thinker.config.video_token_id}
        n = len(ids)
        mask = torch.tensor([[j <= i and turn[j] in (0, turn[i]) and not (turn[i] and ids[j] in media)
                              for j in range(n)] for i in range(n)])
        blind = T.isolate_turns(thinker, dict(inputs), processor.tokenizer)
        blind["attention_mask"] = mask[None, None]
        hidden = thinker.model(**blind, use_audio_in_video=True, use_cache=False).last_hidden_state[:, :-1]
        target = b["labels"][:, 1:]
        ends = target == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        blind_reference = torch.nn.functional.cross_entropy(thinker.lm_head(hidden[ends]).float(), target[ends])
    assert torch.allclose(seen_all, reference, atol=1e-5)
    assert torch.allclose(seen_none, blind_reference, atol=1e-5)
    assert not torch.allclose(seen_none, reference, atol=1e-3)
    assert torch.equal(seen_none, again)  # a pure function of the clip: resumed runs see the same eviction


def test_stop_weight_adds_the_stop_loss_to_training(demo):
    thinker, processor = demo
    b = clip(processor, 2)
    with torch.no_grad():
        plain, parts = T.loss_on_answers(thinker, dict(b), processor.tokenizer)
        with_stop, stop_parts = T.loss_on_answers(thinker, dict(b), processor.tokenizer, stop_weight=0.5)
    assert "stop" not in parts and stop_parts["stop"] > 0
    assert torch.allclose(with_stop, plain + 0.5 * stop_parts["stop"], atol=1e-5)
