"""Streaming prefill (`--protocol stream`): a long clip decoded, encoded and prefilled chunk by chunk, the
cache compressed after every chunk, so memory stays bounded whatever the clip's length.

Qwen2.5-Omni interleaves a video with its soundtrack in 2-s chunks (each chunk: its frame pairs' tokens,
then its 25 audio tokens per second), which is the natural streaming unit. For one clip:

1. **Prompt without pixels** (`StreamPrompt.build`): token ids and the whole clip's 3-D mRoPE positions
   need only counts — frames, the frame grid, audio tokens — so the processor's own placeholder expansion
   (`replace_video_with_audio_token`) and the model's own `get_rope_index` give the one-shot prompt's ids
   and positions without decoding a frame (tests compare them with the processor's output).
2. **Steps** (`plan_steps`): prompt index ranges of `chunk_seconds` of media each, a whole number of
   interleave chunks (default: the fewest holding `MIN_STEP_TOKENS`, so a decoder forward amortises reading
   the weights); the first step also holds the system prompt, the last the closing delimiters.
3. **Front end in blocks** (`frontend.ChunkEncoder`): frames are decoded, the video processor and the vision
   tower run over blocks of many frame pairs (the whole clip when it fits `block_mb`), the audio tower over
   several feature windows per call (`soundtrack`: each window's tokens at its true time); outputs are kept
   on the CPU until their step, merged into the token embeddings as transformers does (placeholders
   replaced in order), and each step is prefilled at its whole-clip positions. Frames are sized for the
   whole clip and both towers attend within a frame pair / a 2-s audio chunk, so the rows equal one-shot
   encoding up to float rounding.
4. **Compression after every step** (`methods.streaming.StreamCompression`): each layer keeps the protected
   text plus a fixed media cap (the budget of the whole clip's media), scored query-agnostically by the
   newest step's rows; so the cache never holds more than the cap plus one step.
5. **Questions** run through the compressed cache exactly as under the `context` protocol (many questions
   per clip; each is appended and cut back).

With a budget that keeps everything, a streamed cache equals the one-shot prefill (tests: first-answer
logits within 1e-4). Memory that grows with the clip: the token ids, positions and layout (a few bytes per
token), and the decoded soundtrack (64 kB per second); frames, encoder outputs (one block) and the KV
cache do not.
Qwen3-Omni interleaves per token with deepstack inputs and is not streamed (a one-line error).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DynamicCache

from acckv_cli.model import soundtrack
from acckv_cli.model.generation import eos_token_ids, forward_segment
from acckv_cli.media.decode import DecodedMedia
from acckv_cli.methods import Budget, CompressionMethod
from acckv_cli.methods.attention import per_layer_attention
from acckv_cli.methods.streaming import StreamCompression, stream_refusal
from acckv_cli.model.load import LoadedModel, processor_kwargs
from acckv_cli.model.positions import check_prompt
from acckv_cli.model.prompt import MediaPrompt, split_template
from acckv_cli.answer.session import ClipSession, MediaCache, ProtocolError, snapshot
from acckv_cli.answer.frontend import DEFAULT_BLOCK_MB, AudioStream, ChunkEncoder  # noqa: F401 (re-exported)

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

# A decoder forward reads every weight once, whatever its rows: a step must hold enough tokens to amortise
# that (measured on the bench's 3B-shaped decoder, 1 CPU thread: 66-token steps cost ×1.14–2.13 of one-shot
# time, 264-token steps ×1.11–1.16; docs/long-videos.md). A real checkpoint's 2-s chunk at 640×360 holds ≈ 650.
MIN_STEP_TOKENS = 512


def auto_chunk_seconds(layout, min_tokens: int = MIN_STEP_TOKENS) -> float:
    """The shortest step, a whole number of interleave chunks, whose media hold ≥ `min_tokens` tokens on
    average over the clip (`--chunk-seconds` left to its default)."""
    chunk = layout.seconds_per_chunk or 2.0
    media = int(layout.media_mask.sum())
    if media == 0:
        return chunk
    per_chunk = media * chunk / max(layout.duration_s, chunk)
    return chunk * max(1, math.ceil(min_tokens / per_chunk))


def plan_steps(layout, chunk_seconds: float | None = 2.0) -> list[tuple[int, int]]:
    """Prompt index ranges [start, end) of the steps: one per `chunk_seconds` of media (a multiple of the
    interleave chunk; None: `auto_chunk_seconds`), in prompt order; the first from 0, the last to the end.

    Qwen2.5-Omni orders media chunk by chunk, so the tokens of one time span are contiguous.
    """
    media = layout.media_mask.nonzero().squeeze(1)
    if media.numel() == 0:
        return [(0, len(layout))]
    if chunk_seconds is None:
        chunk_seconds = auto_chunk_seconds(layout)
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


# --- memory -----------------------------------------------------------------------------------------------

M_MMAP_THRESHOLD = -3             # mallopt parameter (glibc's malloc.h)
MMAP_THRESHOLD = 128 * 1024       # glibc's own initial threshold, kept fixed
_heap_pinned: bool | None = None


def pin_heap_threshold() -> bool:
    """Keep glibc's mmap threshold at its initial 128 KiB for the rest of the process (once; False elsewhere).

    glibc raises the threshold to the size of any mmapped block that is freed (up to 32 MB), so once a model is
    built every per-step tensor of a stream (a step's MLP activations, attention-score chunks) comes from the
    heap, and the heap keeps what it grew to: peak RSS then depends on the order of those allocations over
    the first steps (8-s steps: 83 MB at 1 minute, 118 MB at 5; benchmarks/bench-stream-chunk8.md). With the
    threshold fixed, such tensors are mapped and unmapped: the peak is the live working set (the same runs:
    60.0 and 62.0 MB, results/bench-stream-issue27/chunk8-after.json). Cost: a page fault per 4 kB of each
    large tensor.
    """
    global _heap_pinned
    if _heap_pinned is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _heap_pinned = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        except (OSError, AttributeError):  # not glibc: nothing to pin
            _heap_pinned = False
    return _heap_pinned


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
                   embed, chunk_seconds: float | None = None) -> StreamResult:
    """Prefill `prompt` (any prompt with `layout` and `positions`) into `cache` step by step, compressing
    every layer after each step; `embed(start, end)` gives a step's decoder inputs (`ChunkEncoder.embeds`,
    or token embeddings for the benchmark's synthetic prompts). `chunk_seconds` None: `auto_chunk_seconds`."""
    if (reason := stream_refusal(method)) is not None:
        raise StreamUnsupported(reason)
    pin_heap_threshold()  # bounded memory means a flat peak: see its docstring
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
                 chunk_seconds: float | None = None, block_mb: float | None = DEFAULT_BLOCK_MB):
        self.lm = lm
        self.prompt = StreamPrompt.build_stream(lm, media, max_pixels)
        self.decode_s = media.decode_seconds
        self.encode_s = self.prompt.processor_s
        self._embedded = None
        self.eos = eos_token_ids(lm.thinker, lm.processor.tokenizer)
        self._paid = {"decode", "encode"}
        self._once = {"decode": self.decode_s, "encode": self.encode_s}
        # seconds per step (None: enough for MIN_STEP_TOKENS) and front-end memory per block (None: per step)
        self.chunk_seconds = chunk_seconds if chunk_seconds is not None else auto_chunk_seconds(self.prompt.layout)
        self.block_mb = block_mb
        steps = len(plan_steps(self.prompt.layout, self.chunk_seconds))
        self.prompt.notices.append(f"streamed in {steps} steps of {self.chunk_seconds:g} s"
                                   + ("" if chunk_seconds is not None else f" (the fewest 2-s chunks holding "
                                                                            f"{MIN_STEP_TOKENS} tokens)"))
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
        encoder = ChunkEncoder(self.lm, self.prompt, self.block_mb)
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
