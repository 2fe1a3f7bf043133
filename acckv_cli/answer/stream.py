"""Streaming prefill (`--protocol stream`): a long clip decoded, encoded and prefilled chunk by chunk, the
cache compressed after every chunk, so memory stays bounded whatever the clip's length.

Qwen2.5-Omni interleaves a video with its soundtrack in 2-s chunks (each chunk: its frame pairs' tokens,
then its 25 audio tokens per second), which is the natural streaming unit. For one clip:

1. **Prompt without pixels** (`StreamPrompt.build`): token ids and the whole clip's 3-D mRoPE positions
   need only counts — frames, the frame grid, audio tokens — so the processor's own placeholder expansion
   (`replace_video_with_audio_token`) and the model's own `get_rope_index` give the one-shot prompt's ids
   and positions without decoding a frame (tests compare them with the processor's output).
2. **Steps** (`plan_steps`): prompt index ranges, one per interleave chunk (`chunk_seconds` groups
   several); the first step also holds the system prompt, the last the closing delimiters.
3. **Per step** (`ChunkEncoder`): decode only the step's frames (`frames.FrameReader` slices), run the
   video processor and the vision tower on its frame pairs (sized for the whole clip, so pixels and
   encoder outputs equal the one-shot ones: the vision tower attends within a frame pair), take its audio
   tokens from the audio tower run per feature window (`soundtrack`; a window is encoded once, when its
   first token is needed, and dropped when consumed), merge them into the token embeddings as
   transformers does (placeholders replaced in order), and prefill the step at its whole-clip positions.
4. **Compression after every step** (`methods.streaming.StreamCompression`): each layer keeps the protected
   text plus a fixed media cap (the budget of the whole clip's media), scored query-agnostically by the
   newest step's rows; so the cache never holds more than the cap plus one step.
5. **Questions** run through the compressed cache exactly as under the `context` protocol (many questions
   per clip; each is appended and cut back).

With a budget that keeps everything, a streamed cache equals the one-shot prefill (tests: first-answer
logits within 1e-4). Memory that grows with the clip: the token ids, positions and layout (a few bytes per
token), and the decoded soundtrack (64 kB per second); frames, encoder outputs and the KV cache do not.
Qwen3-Omni interleaves per token with deepstack inputs and is not streamed (a one-line error).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DynamicCache

from acckv_cli.model import soundtrack
from acckv_cli.model.generation import eos_token_ids, forward_segment
from acckv_cli.model.layout import Modality
from acckv_cli.media.decode import DecodedMedia
from acckv_cli.methods import Budget, CompressionMethod
from acckv_cli.methods.attention import per_layer_attention
from acckv_cli.methods.streaming import StreamCompression, stream_refusal
from acckv_cli.model.load import LoadedModel, cast_inputs, processor_kwargs
from acckv_cli.model.positions import check_prompt
from acckv_cli.model.prompt import MediaPrompt, split_template
from acckv_cli.answer.session import ClipSession, MediaCache, ProtocolError, snapshot

PROTOCOL = "stream"


class StreamUnsupported(ProtocolError):
    """This model or method cannot be streamed (one line, exit code 2)."""


# --- the prompt without pixels ---------------------------------------------------------------------------

@dataclass
class AudioPlan:
    """The soundtrack as the encoder sees it: windows of samples and the audio tokens each gives.

    A soundtrack within the model's window is one window, untrimmed, exactly as the processor takes it;
    a longer one is trimmed and cut into windows (`acckv_cli.model.soundtrack`).
    """

    audio: np.ndarray
    bounds: list[tuple[int, int]]   # sample range of each window
    tokens: list[int]               # audio tokens of each window
    n_frames: int                   # mel frames of the whole soundtrack (what `get_rope_index` is told)

    @classmethod
    def of(cls, lm: LoadedModel, audio: np.ndarray) -> "AudioPlan":
        if soundtrack.needs_windows(lm, audio):
            audio, window = soundtrack.trim(lm, audio), soundtrack.window_samples(lm)
            bounds = [(a, min(a + window, audio.shape[0])) for a in range(0, audio.shape[0], window)]
            tokens = [(b - a) // soundtrack.token_samples(lm) for a, b in bounds]
            return cls(audio, bounds, tokens, sum(tokens) * soundtrack.FRAMES_PER_TOKEN)
        frames = int(soundtrack._extract(lm, [audio])[1].sum())  # as the processor computes it
        return cls(audio, [(0, audio.shape[0])], [_encoder_tokens(frames)], frames)

    def features(self, lm: LoadedModel, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of window `index`: ([1, mel, F], [1, F])."""
        a, b = self.bounds[index]
        return soundtrack._extract(lm, [self.audio[a:b]])


def _encoder_tokens(frames: int) -> int:
    """Audio tokens the encoder gives for `frames` mel frames (two stride-2 reductions)."""
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


@dataclass
class StreamPrompt(MediaPrompt):
    """A `MediaPrompt` whose `inputs` hold no pixels or audio features: ids, grid, and the soundtrack's length.

    media:       the decoded clip (frames may be a lazy `FrameReader`)
    audio_plan:  the soundtrack's windows, or None
    video_size:  `size` kwargs that make the video processor give every chunk the whole clip's frame size
    """

    media: DecodedMedia | None = None
    audio_plan: AudioPlan | None = None
    video_kwargs: dict = field(default_factory=dict)

    @classmethod
    def build_stream(cls, lm: LoadedModel, media: DecodedMedia, max_pixels: int | None = None) -> "StreamPrompt":
        """Ids and positions of the one-shot prompt, from counts only (no frame decoded, no encoder run)."""
        start = time.perf_counter()
        if not lm.family.chunked_interleave:
            raise StreamUnsupported(f"--protocol stream needs Qwen2.5-Omni's 2-s audio/video chunks; "
                                    f"{lm.family.title} interleaves per token: use --protocol context")
        prefix, suffix = split_template(lm, media)
        notices: list[str] = []
        kwargs, use_audio_in_video = processor_kwargs(lm, media, max_pixels, notices)
        plan = AudioPlan.of(lm, media.audio) if media.audio is not None else None
        video_kwargs, grid, second_per_grid = _video_facts(lm, media, kwargs) if media.frames is not None else ({}, None, None)
        text = _expand(lm, prefix, grid, second_per_grid, plan)
        ids = lm.processor.tokenizer(text, return_tensors="pt")["input_ids"].to(lm.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if grid is not None:
            inputs.update(video_grid_thw=grid.to(lm.device),
                          video_second_per_grid=torch.tensor([second_per_grid], device=lm.device))
        if plan is not None:
            inputs["feature_attention_mask"] = torch.ones(1, plan.n_frames, dtype=torch.long, device=lm.device)
        prompt = cls(lm, inputs, use_audio_in_video, suffix, time.perf_counter() - start, notices,
                     media=media, audio_plan=plan, video_kwargs=video_kwargs)
        check_prompt(lm, prompt.layout)
        return prompt


def _video_facts(lm: LoadedModel, media: DecodedMedia, kwargs: dict) -> tuple[dict, torch.Tensor, float]:
    """(video-processor kwargs for any chunk, the whole clip's grid [1, 3], seconds per frame pair).

    The processor caps a frame's pixels by an even share of `max_video_tokens` over the clip's frames
    (`cap_pixels_per_frame`), so the size depends on the frame count: the chunk kwargs carry the whole
    clip's cap explicitly, and the grid is read from the video processor's output on the first two frames.
    """
    vp = lm.processor.video_processor
    n_frames = len(media.frames)
    size = dict(kwargs["videos_kwargs"]["size"])
    factor = vp.patch_size * vp.merge_size
    if kwargs["videos_kwargs"].get("cap_pixels_per_frame"):  # the processor's own rule, for the whole clip
        total = int(vp.max_video_tokens * factor * factor * 0.9)
        size["longest_edge"] = max(min(size["longest_edge"], total * vp.temporal_patch_size // n_frames),
                                   int(size["shortest_edge"] * 1.05))
    chunk_kwargs = {"size": size, "cap_pixels_per_frame": False}
    first = vp(videos=[media.frames[0:vp.temporal_patch_size]], return_tensors="pt", **chunk_kwargs)
    _, height, width = (int(x) for x in first["video_grid_thw"][0])
    pairs = -(-n_frames // vp.temporal_patch_size)
    fps = media.processor_fps if media.processor_fps is not None else 2.0
    return chunk_kwargs, torch.tensor([[pairs, height, width]]), vp.temporal_patch_size / fps


def _expand(lm: LoadedModel, prefix: str, grid, second_per_grid, plan: AudioPlan | None) -> str:
    """The prefix text with the media placeholder expanded by the processor's own code."""
    proc = lm.processor
    if grid is None:
        return prefix.replace(proc.audio_token, proc.audio_token * sum(plan.tokens), 1)
    video = {"video_grid_thw": grid, "video_second_per_grid": [second_per_grid]}
    if plan is None:
        return prefix.replace(proc.video_token, proc.video_token * int(grid.prod() // proc.video_processor.merge_size ** 2), 1)
    rate = getattr(proc, "position_id_per_seconds", 25)
    chunk = getattr(proc, "seconds_per_chunk", 2.0)
    placeholder = proc.replace_video_with_audio_token(video, 0, {"num_audio_tokens": [sum(plan.tokens)]}, 0,
                                                      position_id_per_seconds=rate, seconds_per_chunk=chunk)
    return prefix.replace(proc.video_token, placeholder, 1)


# --- steps -----------------------------------------------------------------------------------------------

def plan_steps(layout, chunk_seconds: float = 2.0) -> list[tuple[int, int]]:
    """Prompt index ranges [start, end) of the steps: one per `chunk_seconds` of media (a multiple of the
    interleave chunk), in prompt order; the first from 0, the last to the end of the prefix.

    Qwen2.5-Omni orders media chunk by chunk, so the tokens of one time span are contiguous.
    """
    media = layout.media_mask.nonzero().squeeze(1)
    if media.numel() == 0:
        return [(0, len(layout))]
    seconds = layout.time_s[media]
    span = chunk_seconds if layout.seconds_per_chunk is None else max(
        layout.seconds_per_chunk, round(chunk_seconds / layout.seconds_per_chunk) * layout.seconds_per_chunk)
    step_of = torch.div(seconds + 1e-6, span, rounding_mode="floor").long()
    changes = (step_of[1:] != step_of[:-1]).nonzero().squeeze(1) + 1
    if bool((step_of[1:] < step_of[:-1]).any()):
        raise StreamUnsupported("media tokens are not in time order; this prompt cannot be streamed")
    starts = [0] + media[changes].tolist()
    ends = starts[1:] + [len(layout)]
    return list(zip(starts, ends))


# --- per-step decoder inputs -----------------------------------------------------------------------------

class AudioStream:
    """Audio tokens by index, from the audio tower run once per feature window; consumed windows dropped."""

    def __init__(self, lm: LoadedModel, plan: AudioPlan):
        self.lm, self.plan = lm, plan
        self.offsets = np.cumsum([0, *plan.tokens])
        self.cache: dict[int, torch.Tensor] = {}
        self.encoded = 0

    def tokens(self, start: int, stop: int) -> torch.Tensor:
        """Audio tokens [start, stop) of the soundtrack: [stop − start, d]."""
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

    def _window(self, w: int) -> torch.Tensor:
        if w not in self.cache:
            features, mask = self.plan.features(self.lm, w)
            features = features.to(self.lm.device, self.lm.dtype)
            out = self.lm.thinker.model.get_audio_features(features, mask.to(self.lm.device)).last_hidden_state
            if out.shape[0] != self.plan.tokens[w]:
                raise RuntimeError(f"audio window {w}: {out.shape[0]} tokens, expected {self.plan.tokens[w]}")
            self.cache[w] = out
            self.encoded += 1
        return self.cache[w]


class ChunkEncoder:
    """Decoder inputs of prompt tokens [start, end): embeddings with the step's video and audio features merged.

    Timings (seconds) accumulate in `frames_s` (decoding frames) and `encode_s` (processor + encoders).
    """

    def __init__(self, lm: LoadedModel, prompt: StreamPrompt):
        self.lm, self.prompt = lm, prompt
        modality = prompt.layout.modality
        self.video_before = torch.cumsum(modality == int(Modality.VIDEO), 0) - (modality == int(Modality.VIDEO)).long()
        self.audio_before = torch.cumsum(modality == int(Modality.AUDIO), 0) - (modality == int(Modality.AUDIO)).long()
        self.audio = AudioStream(lm, prompt.audio_plan) if prompt.audio_plan is not None else None
        grid = prompt.inputs.get("video_grid_thw")
        self.per_pair = int(grid[0, 1] * grid[0, 2]) // lm.processor.video_processor.merge_size ** 2 if grid is not None else 0
        self.frames_s = self.encode_s = 0.0
        self.max_frames_read = 0

    @torch.inference_mode()
    def embeds(self, start: int, end: int) -> dict:
        """`{"inputs_embeds": [1, end − start, d]}` for the decoder."""
        ids = self.prompt.input_ids[:, start:end]
        modality = self.prompt.layout.modality[start:end]
        embeds = self.lm.thinker.get_decoder().embed_tokens(ids)
        video = modality == int(Modality.VIDEO)
        audio = modality == int(Modality.AUDIO)
        if video.any():
            first, count = int(self.video_before[start + int(video.nonzero()[0])]), int(video.sum())
            if first % self.per_pair or count % self.per_pair:
                raise RuntimeError(f"step [{start}, {end}) does not hold whole frame pairs")
            features = self._video(first // self.per_pair, count // self.per_pair)
            embeds[0, video.to(embeds.device)] = features.to(embeds.dtype)
        if audio.any():
            t0 = time.perf_counter()
            first = int(self.audio_before[start + int(audio.nonzero()[0])])
            embeds[0, audio.to(embeds.device)] = self.audio.tokens(first, first + int(audio.sum())).to(embeds.dtype)
            self.encode_s += time.perf_counter() - t0
        return {"inputs_embeds": embeds}

    def _video(self, first_pair: int, n_pairs: int) -> torch.Tensor:
        """Vision-tower outputs of frame pairs [first_pair, first_pair + n_pairs): [n_pairs · tokens/pair, d]."""
        vp = self.lm.processor.video_processor
        t0 = time.perf_counter()
        frames = self.prompt.media.frames[first_pair * vp.temporal_patch_size:(first_pair + n_pairs) * vp.temporal_patch_size]
        self.max_frames_read = max(self.max_frames_read, len(frames))
        t1 = time.perf_counter()
        pixels = vp(videos=[frames], return_tensors="pt", **self.prompt.video_kwargs)
        pixels = cast_inputs({k: v.to(self.lm.device) for k, v in pixels.items()}, self.lm.dtype)
        out = self.lm.thinker.model.get_video_features(pixels["pixel_values_videos"], pixels["video_grid_thw"])
        features = torch.cat(list(out.pooler_output))
        self.frames_s += t1 - t0
        self.encode_s += time.perf_counter() - t1
        if features.shape[0] != n_pairs * self.per_pair:
            raise RuntimeError(f"frame pairs {first_pair}+{n_pairs}: {features.shape[0]} video tokens, "
                               f"expected {n_pairs * self.per_pair}")
        return features


# --- the streaming prefill -------------------------------------------------------------------------------

@dataclass
class StreamResult:
    """One streaming prefill: the compression run (per-layer records, trace), its steps, and its time
    outside `embed` (decoder forwards and compression) and inside it (frames, processor, encoders)."""

    run: StreamCompression
    steps: list[tuple[int, int]]
    prefill_s: float
    embed_s: float


def stream_prefill(lm: LoadedModel, prompt, cache, method: CompressionMethod, budget: Budget,
                   embed, chunk_seconds: float = 2.0) -> StreamResult:
    """Prefill `prompt` (any prompt with `layout` and `positions`) into `cache` step by step, compressing
    every layer after each step; `embed(start, end)` gives a step's decoder inputs (`ChunkEncoder.embeds`,
    or token embeddings for the benchmark's synthetic prompts)."""
    if (reason := stream_refusal(method)) is not None:
        raise StreamUnsupported(reason)
    steps = plan_steps(prompt.layout, chunk_seconds)
    positions = prompt.positions
    start_time, embed_s = time.perf_counter(), 0.0
    with torch.inference_mode(), per_layer_attention(lm.thinker):
        with StreamCompression(method, lm.thinker, prompt.layout, budget) as run:
            for start, end in steps:
                t0 = time.perf_counter()
                inputs = embed(start, end)
                embed_s += time.perf_counter() - t0
                run.begin_step(start, end)
                forward_segment(lm.thinker, cache, positions[:, :, start:end], embedded=inputs, logits=False)
        run.finish_stream(cache)
    return StreamResult(run, steps, time.perf_counter() - start_time - embed_s, embed_s)


class StreamSession(ClipSession):
    """A `ClipSession` whose media cache is prefilled by streaming (`--protocol stream`).

    Its prompt never holds pixels or features, so `embedded` does not exist; answers run as under `context`.
    """

    def __init__(self, lm: LoadedModel, media: DecodedMedia, max_pixels: int | None = None,
                 chunk_seconds: float = 2.0):
        self.lm = lm
        self.prompt = StreamPrompt.build_stream(lm, media, max_pixels)
        self.decode_s = media.decode_seconds
        self.encode_s = self.prompt.processor_s
        self._embedded = None
        self.eos = eos_token_ids(lm.thinker, lm.processor.tokenizer)
        self._paid = {"decode", "encode"}
        self._once = {"decode": self.decode_s, "encode": self.encode_s}
        self.chunk_seconds = chunk_seconds
        self.last_stream: StreamResult | None = None
        self.last_encoder: ChunkEncoder | None = None

    @property
    def embedded(self) -> dict:
        raise StreamUnsupported("a streamed clip has no whole-prompt decoder inputs (only the stream protocol runs)")

    def media_cache(self, method: CompressionMethod | None = None, budget: Budget | None = None,
                    needs=None) -> MediaCache:
        """Stream system + media into a cache compressed after every step by `method` at `budget`."""
        if method is None:
            raise StreamUnsupported("--protocol stream compresses while prefilling: it needs a method")
        cache = DynamicCache(config=self.lm.thinker.config.get_text_config(decoder=True))
        encoder = ChunkEncoder(self.lm, self.prompt)
        result = stream_prefill(self.lm, self.prompt, cache, method, budget or Budget(0.2), encoder.embeds,
                                self.chunk_seconds)
        # Frames are decoded inside the stream and the encoders run there too: every streamed media cache pays
        # them again, so they are its own costs (with the session's once-per-clip part — audio decode, the
        # prompt's processor — on the first cache); `decode_s`/`encode_s` total what the session paid.
        costs = {"decode": encoder.frames_s, "encode": encoder.encode_s}
        for cost in ("decode", "encode"):
            if cost in self._paid:
                costs[cost] += self._once[cost]
                self._paid.discard(cost)
        self.decode_s += encoder.frames_s
        self.encode_s += encoder.encode_s
        self.last_stream, self.last_encoder = result, encoder
        return MediaCache(cache, snapshot(cache), result.run, None, result.prefill_s, costs=costs)

    def media_cache_for(self, protocol: str, method: CompressionMethod, budget: Budget) -> MediaCache:
        if protocol != PROTOCOL:
            raise StreamUnsupported(f"a streamed clip answers under --protocol stream only, not {protocol}")
        return self.media_cache(method, budget)
