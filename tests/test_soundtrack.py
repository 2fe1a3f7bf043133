"""The whole soundtrack: audio longer than the model's feature window is encoded window by window and
placed at its true time, never cut (one-shot here; streaming in test_stream.py).

The tiny model's processor gets a 4-s window (`tiny_lm_w4`), so a 10-s clip has three windows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import synthetic_media
from acckv_cli.model import soundtrack
from acckv_cli.model.layout import Modality
from acckv_cli.methods import Budget, get_method
from acckv_cli.answer.session import ClipSession


def encode_window(lm, audio, index):
    features, mask = soundtrack.window_features(lm, audio, index)
    with torch.inference_mode():
        return lm.thinker.model.get_audio_features(features, mask).last_hidden_state


@pytest.mark.parametrize("video", [True, False])
def test_every_window_lands_at_its_true_time(tiny_lm_w4, video):
    """10.3 s of audio with a 4-s window: 257 audio tokens (10.28 s, trimmed to whole 40-ms tokens) instead of
    100; the tokens at [4w, 4w + 4) s are exactly window w encoded on its own; the notice says it was kept."""
    media = synthetic_media(seconds=10.3, video=video)
    session = ClipSession(tiny_lm_w4, media)
    layout = session.prompt.layout
    audio = layout.mask(Modality.AUDIO).nonzero().squeeze(1)
    assert audio.numel() == 257
    assert session.prompt.inputs["input_features"].shape[0] == 3
    assert session.prompt.notices == ["soundtrack of 10 s encoded whole, in 3 windows of the model's 4 s audio window"]
    times = layout.time_s[audio]
    assert torch.allclose(times, torch.arange(257) / 25.0)
    embeds = session.embedded["inputs_embeds"][0]
    for w, (start, stop) in enumerate([(0, 100), (100, 200), (200, 257)]):
        alone = encode_window(tiny_lm_w4, media.audio, w)
        assert alone.shape[0] == stop - start
        assert torch.equal(embeds[audio[start:stop]], alone), w
        assert float(times[start]) == pytest.approx(4.0 * w)


def test_audio_after_the_window_reaches_the_answer(tiny_lm_w4):
    """A sound that starts after the first window changes the first answer token's distribution (it used to
    be cut away with everything after the window)."""
    quiet = synthetic_media(seconds=9.0, video=False)
    loud = synthetic_media(seconds=9.0, video=False)
    loud.audio = loud.audio.copy()
    t = np.arange(16000 * 3) / 16000
    loud.audio[16000 * 6:] += 0.8 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    logits = []
    for media in (quiet, loud):
        session = ClipSession(tiny_lm_w4, media)
        answer = session.ask(["What do you hear?"], get_method("full"), Budget(1.0), "context", 1)[0]
        logits.append(answer.first_logits)
    assert (logits[0] - logits[1]).abs().max() > 1e-4


@pytest.mark.parametrize("samples", [64000 + 1, 64000 * 2 + 159, 64000 * 2 + 32399, 64000 * 2 + 640 * 50 + 7])
def test_window_token_counts_add_up(tiny_lm_w4, samples):
    """Lengths that are no whole number of hops or tokens: the windows' tokens equal the processor's count
    for the (trimmed) whole soundtrack, so the prompt and the encoder always agree."""
    audio = (np.random.default_rng(0).standard_normal(samples) * 0.1).astype(np.float32)
    trimmed = soundtrack.trim(tiny_lm_w4, audio)
    whole = tiny_lm_w4.processor.feature_extractor([trimmed], sampling_rate=16000, padding="max_length",
                                                    truncation=False, return_attention_mask=True,
                                                    return_tensors="pt")
    windows = soundtrack.windowed_inputs(tiny_lm_w4, audio)
    counts = soundtrack.tokens_per_window(windows["feature_attention_mask"])
    assert sum(counts) == int(whole["attention_mask"].sum()) // 4 == trimmed.shape[0] // 640
    assert all(c > 0 for c in counts)


def test_audio_within_the_window_is_untouched(tiny_lm):
    """A soundtrack shorter than the window goes through the processor exactly as before (one feature row)."""
    session = ClipSession(tiny_lm, synthetic_media(seconds=6.0))
    assert session.prompt.inputs["input_features"].shape[0] == 1 and session.prompt.notices == []
