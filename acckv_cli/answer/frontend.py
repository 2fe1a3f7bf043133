"""The streaming front end: frames, processor and encoders run over large blocks; decoder steps read from them.

A streamed clip is prefilled in short decoder steps (a few seconds) so that the KV cache stays bounded, but
nothing forces the front end to work at that grain: the processor and the vision tower have a fixed cost per
call, and a 2-s chunk is a few frames. The measured cost of calling them once per chunk (issue #27: 20.6 s
for a 10-minute clip on the demo model against 2.9 s for one processor call over the whole clip) is what made
streaming slow. So the front end runs over **blocks** of many frame pairs (and several audio windows):

* `VideoBlocks`: decodes a block's frames, runs the video processor once and the vision tower once over the
  block's frame pairs, keeps the block's outputs (on the CPU: a GPU holds only the step being prefilled), and
  hands each step its rows; a block is dropped when the steps have moved past it;
* `AudioStream`: the audio tower over several feature windows per call, each window's tokens at its true
  time (`model/soundtrack.py`), windows dropped once their last token is placed;
* `ChunkEncoder.embeds(start, end)`: a step's decoder inputs, placeholders replaced by those rows in order,
  as transformers' `masked_scatter` does.

A block is as large as `block_mb` allows (the whole clip when it fits), from an estimate of what one frame
pair (audio window) costs while its block is encoded and held: decoded frames, pixels, the tower's widest
activations and its outputs (`pair_bytes`, `window_bytes`); the bound is split between video and audio.

Exactness: Qwen2.5-Omni's vision tower attends within one temporal patch (a frame pair): full-attention
blocks use one sequence per temporal patch and window attention cuts windows inside each one, with rotary
positions per (h, w); the audio tower attends within 2-s chunks of each window. So a block's rows equal
per-chunk encoding up to float rounding (matrix products over more rows may sum in another order): tests
check ≤ 1e-5 against per-chunk encoding and the same kept sets and answers as per-chunk streaming.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from acckv_cli.model.layout import Modality
from acckv_cli.model.load import LoadedModel, cast_inputs

if TYPE_CHECKING:
    from acckv_cli.answer.stream import AudioPlan, StreamPrompt

# Front-end memory per block by default: a 10-minute demo-model clip fits in one block; a 640×360 clip on
# Qwen2.5-Omni-7B's vision tower (≈ 45 MB per frame pair while encoded) gets blocks of ≈ 10 s.
DEFAULT_BLOCK_MB = 512
ACTIVATION_WIDTHS = 4   # hidden-sized tensors a tower block holds at once besides its MLP (q, k, v, residual)


def pair_bytes(lm: LoadedModel, grid: torch.Tensor) -> int:
    """Bytes one frame pair costs while its block is encoded and held: decoded frames (uint8), pixels, the
    vision tower's widest activations, and the merged outputs kept for the decoder (estimate)."""
    vc = lm.thinker.config.vision_config
    patches = int(grid[0, 1] * grid[0, 2])
    item = torch.tensor([], dtype=lm.dtype).element_size()
    frames = vc.temporal_patch_size * patches * vc.patch_size ** 2 * 3
    pixels = patches * vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2 * 4
    activations = patches * (vc.intermediate_size + ACTIVATION_WIDTHS * vc.hidden_size) * item
    outputs = patches // lm.processor.video_processor.merge_size ** 2 * vc.out_hidden_size * item
    return frames + pixels + activations + outputs


def window_bytes(lm: LoadedModel, plan: "AudioPlan") -> int:
    """Bytes one audio window costs while encoded and held: features, activations, output tokens (estimate)."""
    ac = lm.thinker.config.audio_config
    item = torch.tensor([], dtype=lm.dtype).element_size()
    frames = max(b - a for a, b in plan.bounds) // lm.processor.feature_extractor.hop_length
    features = ac.num_mel_bins * frames * 4
    activations = frames // 2 * (ac.encoder_ffn_dim + ACTIVATION_WIDTHS * ac.d_model) * item
    return features + activations + max(plan.tokens) * ac.output_dim * item


def _share(block_mb: float, parts: int) -> int:
    return int(block_mb * 2**20) // max(1, parts)


class VideoBlocks:
    """Vision-tower outputs of frame pairs, computed a block of `per_block` pairs at a time."""

    def __init__(self, lm: LoadedModel, prompt: "StreamPrompt", per_block: int):
        self.lm, self.prompt, self.per_block = lm, prompt, max(1, per_block)
        grid = prompt.inputs["video_grid_thw"]
        self.pairs = int(grid[0, 0])
        self.per_pair = int(grid[0, 1] * grid[0, 2]) // lm.processor.video_processor.merge_size ** 2
        self.first = 0
        self.rows: torch.Tensor | None = None   # [pairs in block · per_pair, d] on the CPU
        self.blocks = 0
        self.frames_s = self.encode_s = 0.0
        self.max_frames_read = 0

    def features(self, first_pair: int, n_pairs: int) -> torch.Tensor:
        """Outputs of frame pairs [first_pair, first_pair + n_pairs): [n_pairs · per_pair, d] on the CPU.

        Steps ask for consecutive pairs, so blocks tile the clip: a block starts at the first pair not held
        and every pair is encoded once (a step that straddles two blocks takes the rest of one, then the next).
        """
        parts = []
        while n_pairs > 0:
            held = 0 if self.rows is None else self.rows.shape[0] // self.per_pair
            if not self.first <= first_pair < self.first + held:
                self.rows = None  # steps only move forward: the held block is done, free it before the next
                self._encode(first_pair, min(self.pairs, first_pair + max(n_pairs, self.per_block)))
                held = self.rows.shape[0] // self.per_pair
            take = min(n_pairs, self.first + held - first_pair)
            a = (first_pair - self.first) * self.per_pair
            parts.append(self.rows[a:a + take * self.per_pair])
            first_pair, n_pairs = first_pair + take, n_pairs - take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.inference_mode()
    def _encode(self, first: int, stop: int) -> None:
        vp = self.lm.processor.video_processor
        t0 = time.perf_counter()
        frames = self.prompt.media.frames[first * vp.temporal_patch_size:stop * vp.temporal_patch_size]
        self.max_frames_read = max(self.max_frames_read, len(frames))
        t1 = time.perf_counter()
        pixels = vp(videos=[frames], return_tensors="pt", **self.prompt.video_kwargs)
        del frames
        pixels = cast_inputs({k: v.to(self.lm.device) for k, v in pixels.items()}, self.lm.dtype)
        out = self.lm.thinker.model.get_video_features(pixels["pixel_values_videos"], pixels["video_grid_thw"])
        rows = torch.cat(list(out.pooler_output)).cpu()
        if rows.shape[0] != (stop - first) * self.per_pair:
            raise RuntimeError(f"frame pairs {first}–{stop}: {rows.shape[0]} video tokens, "
                               f"expected {(stop - first) * self.per_pair}")
        self.first, self.rows = first, rows
        self.blocks += 1
        self.frames_s += t1 - t0
        self.encode_s += time.perf_counter() - t1


class AudioStream:
    """Audio tokens by index, from the audio tower run over `per_block` feature windows per call; each window
    encoded once, and dropped once its last token is placed."""

    def __init__(self, lm: LoadedModel, plan: "AudioPlan", per_block: int = 1):
        self.lm, self.plan, self.per_block = lm, plan, max(1, per_block)
        self.offsets = np.cumsum([0, *plan.tokens])
        self.cache: dict[int, torch.Tensor] = {}
        self.encoded = 0   # windows encoded
        self.calls = 0     # audio-tower calls

    def tokens(self, start: int, stop: int) -> torch.Tensor:
        """Audio tokens [start, stop) of the soundtrack: [stop − start, d] (on the CPU)."""
        parts = []
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        for w in range(first, len(self.plan.tokens)):
            lo, hi = int(self.offsets[w]), int(self.offsets[w + 1])
            if lo >= stop:
                break
            parts.append(self._window(w)[max(start, lo) - lo:min(stop, hi) - lo])
        for w in [w for w in self.cache if self.offsets[w + 1] <= stop]:
            del self.cache[w]  # every token of it has been placed
        return torch.cat(parts) if parts else torch.zeros(0)

    @torch.inference_mode()
    def _window(self, w: int) -> torch.Tensor:
        if w not in self.cache:
            from acckv_cli.model import soundtrack

            ws = range(w, min(len(self.plan.tokens), w + self.per_block))
            pieces = [self.plan.audio[a:b] for a, b in (self.plan.bounds[i] for i in ws)]
            features, mask = soundtrack._extract(self.lm, pieces)  # as the processor computes each window
            features = features.to(self.lm.device, self.lm.dtype)
            out = self.lm.thinker.model.get_audio_features(features, mask.to(self.lm.device)).last_hidden_state
            expected = [self.plan.tokens[i] for i in ws]
            if out.shape[0] != sum(expected):
                raise RuntimeError(f"audio windows {w}–{ws[-1]}: {out.shape[0]} tokens, expected {sum(expected)}")
            for i, rows in zip(ws, out.cpu().split(expected)):
                self.cache[i] = rows
            self.encoded += len(ws)
            self.calls += 1
        return self.cache[w]


class ChunkEncoder:
    """Decoder inputs of prompt tokens [start, end): embeddings with the step's video and audio features merged.

    `block_mb` bounds the front end's memory per block (video and audio share it); None encodes per step,
    one call per 2-s chunk and one audio window per call, as streaming did before blocks (kept for tests and
    for comparison). Timings (seconds) accumulate in `frames_s` (decoding frames) and `encode_s` (processor
    + encoders).
    """

    def __init__(self, lm: LoadedModel, prompt: "StreamPrompt", block_mb: float | None = DEFAULT_BLOCK_MB):
        self.lm, self.prompt = lm, prompt
        modality = prompt.layout.modality
        video, audio = modality == int(Modality.VIDEO), modality == int(Modality.AUDIO)
        self.video_before = torch.cumsum(video, 0) - video.long()
        self.audio_before = torch.cumsum(audio, 0) - audio.long()
        grid, plan = prompt.inputs.get("video_grid_thw"), prompt.audio_plan
        parts = (grid is not None) + (plan is not None)
        if grid is not None:
            pairs = 0 if block_mb is None else _share(block_mb, parts) // pair_bytes(lm, grid)
            self.video = VideoBlocks(lm, prompt, pairs)
        else:
            self.video = None
        windows = 1 if block_mb is None or plan is None else _share(block_mb, parts) // window_bytes(lm, plan)
        self.audio = AudioStream(lm, plan, windows) if plan is not None else None
        self.audio_s = 0.0

    @property
    def frames_s(self) -> float:
        return self.video.frames_s if self.video is not None else 0.0

    @property
    def encode_s(self) -> float:
        return (self.video.encode_s if self.video is not None else 0.0) + self.audio_s

    @property
    def max_frames_read(self) -> int:
        return self.video.max_frames_read if self.video is not None else 0

    @torch.inference_mode()
    def embeds(self, start: int, end: int) -> dict:
        """`{"inputs_embeds": [1, end − start, d]}` for the decoder."""
        ids = self.prompt.input_ids[:, start:end]
        modality = self.prompt.layout.modality[start:end]
        embeds = self.lm.thinker.get_decoder().embed_tokens(ids)
        video = modality == int(Modality.VIDEO)
        audio = modality == int(Modality.AUDIO)
        if video.any():
            per_pair = self.video.per_pair
            first, count = int(self.video_before[start + int(video.nonzero()[0])]), int(video.sum())
            if first % per_pair or count % per_pair:
                raise RuntimeError(f"step [{start}, {end}) does not hold whole frame pairs")
            features = self.video.features(first // per_pair, count // per_pair)
            embeds[0, video.to(embeds.device)] = features.to(embeds.device, embeds.dtype)
        if audio.any():
            t0 = time.perf_counter()
            first = int(self.audio_before[start + int(audio.nonzero()[0])])
            tokens = self.audio.tokens(first, first + int(audio.sum()))
            embeds[0, audio.to(embeds.device)] = tokens.to(embeds.device, embeds.dtype)
            self.audio_s += time.perf_counter() - t0
        return {"inputs_embeds": embeds}
