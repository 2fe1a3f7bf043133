"""Demo-model training pieces: answer-only labels and question turns isolated from each other."""

from __future__ import annotations

import random
from pathlib import Path

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
        plain, _ = T.loss_on_answers(thinker, dict(b))
        isolated, _ = T.loss_on_answers(thinker, dict(b), processor.tokenizer)
    assert torch.allclose(plain, isolated, atol=1e-6)


def test_later_turns_cannot_see_earlier_answers(demo):
    thinker, processor = demo
    b = batch(processor, 4, indices=(5,))
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
    """One label per merger output and per audio-tower output, or cross-entropy would raise."""
    thinker, processor = demo
    b = batch(processor, 2, indices=(0, 3))
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
    spec = T.replace(T.make_example("samples", 1881).spec, fps=T.FPS)
    assert T.as_decoded(render_frames(spec)).shape == decoded.frames.shape
