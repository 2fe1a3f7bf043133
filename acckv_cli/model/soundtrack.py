"""The whole soundtrack: audio longer than the feature extractor's window, encoded window by window.

Qwen2.5-Omni's processor pads or cuts audio to its feature extractor's window (`chunk_length`: 30 s for
the published checkpoints, 15 s for the built-in demo model), so everything heard after it used to be
lost. Here a soundtrack longer than the window is cut into consecutive windows of exactly that length:

* each window's log-mel features are computed by the feature extractor as for a clip of that length
  (padded to the window, normalised on its own), so every window is in the distribution the audio
  encoder was trained on;
* the windows reach the audio encoder as separate audio items (`input_features` [n_windows, mel, F],
  `feature_attention_mask` [n_windows, F]): transformers encodes each item on its own and concatenates
  their tokens in order, so window w gives the audio tokens at [w·W, (w+1)·W) seconds;
* the prompt holds the whole soundtrack's audio tokens (the processor's own count, asked for with
  `truncation=False`) and mRoPE places audio token i at i / 25 s, so every window lands at its true time.

Token counts agree exactly because the soundtrack is first trimmed to a whole number of audio tokens
(4 mel frames = 640 samples = 40 ms at 16 kHz; at most 39 ms dropped at the very end, the part the
encoder's stride-4 reduction would round away anyway): a window of F frames (F a multiple of 4) gives
F / 4 tokens, and the windows' counts add up to the whole soundtrack's.

Streaming (`acckv_cli.answer.stream`) computes the same features one window at a time (`window_features`), so
streamed and one-shot runs encode identical windows. Audio within the window is left exactly as before.
"""

from __future__ import annotations

import numpy as np
import torch

FRAMES_PER_TOKEN = 4  # two stride-2 reductions in the audio encoder (conv, then average pooling)


def window_samples(lm) -> int | None:
    """Samples per feature-extractor window, or None for a family whose processor never cuts audio."""
    if lm.audio_limit_s is None:
        return None
    return int(round(lm.audio_limit_s * lm.processor.feature_extractor.sampling_rate))


def needs_windows(lm, audio: np.ndarray | None) -> bool:
    """True when `audio` is longer than the model's feature window (it would be cut without windows)."""
    window = window_samples(lm)
    return audio is not None and window is not None and audio.shape[0] > window


def token_samples(lm) -> int:
    """Samples per audio token (hop × 4 = 640 at 16 kHz: 25 tokens per second)."""
    return int(lm.processor.feature_extractor.hop_length) * FRAMES_PER_TOKEN


def trim(lm, audio: np.ndarray) -> np.ndarray:
    """The soundtrack cut to a whole number of audio tokens (see the module docstring)."""
    step = token_samples(lm)
    return audio[: audio.shape[0] // step * step]


def n_windows(lm, audio: np.ndarray) -> int:
    return -(-trim(lm, audio).shape[0] // window_samples(lm))


def _extract(lm, pieces: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """The feature extractor as the processor calls it (padding to the window): [n, mel, F], [n, F]."""
    fe = lm.processor.feature_extractor
    out = fe(pieces, sampling_rate=fe.sampling_rate, padding="max_length", return_attention_mask=True,
             return_tensors="pt")
    return out["input_features"], out["attention_mask"]


def window_features(lm, audio: np.ndarray, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of window `index` alone: ([1, mel, F], [1, F]); equal to that row of `windowed_inputs`."""
    audio, window = trim(lm, audio), window_samples(lm)
    return _extract(lm, [audio[index * window:(index + 1) * window]])


def windowed_inputs(lm, audio: np.ndarray) -> dict:
    """`input_features` [n_windows, mel, F] and `feature_attention_mask` [n_windows, F] of the soundtrack."""
    audio, window = trim(lm, audio), window_samples(lm)
    features, mask = _extract(lm, [audio[i:i + window] for i in range(0, audio.shape[0], window)])
    return {"input_features": features, "feature_attention_mask": mask}


def tokens_per_window(mask: torch.Tensor) -> list[int]:
    """Audio tokens each window gives, from its feature mask [n_windows, F] (frames / 4)."""
    return [int(f) // FRAMES_PER_TOKEN for f in mask.sum(-1)]


def notice(lm, audio: np.ndarray, rate: int) -> str:
    """What the user is told: the soundtrack is kept whole, in windows of the model's length."""
    return (f"soundtrack of {audio.shape[0] / rate:.0f} s encoded whole, in {n_windows(lm, audio)} windows of the "
            f"model's {lm.audio_limit_s:.0f} s audio window")


def replace_features(lm, audio: np.ndarray, inputs: dict) -> dict:
    """Processor output for the trimmed whole soundtrack with its features replaced by the windows'.

    The processor (called with `truncation=False`) counted the whole soundtrack's audio tokens and placed
    them; only its single long feature row is swapped for the per-window rows. Checks that both counts agree.
    """
    windows = windowed_inputs(lm, audio)
    expected = int(inputs["feature_attention_mask"].sum()) // FRAMES_PER_TOKEN
    if sum(tokens_per_window(windows["feature_attention_mask"])) != expected:
        raise RuntimeError("audio windows and the processor disagree on the number of audio tokens")
    device = inputs["input_features"].device
    return {**inputs, **{k: v.to(device) for k, v in windows.items()}}
