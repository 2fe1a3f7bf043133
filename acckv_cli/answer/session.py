"""One clip, many questions: decode, encode and prefill the media once, answer from the compressed cache.

Where compression happens relative to the answer decides whether the answer depends on it at all, so
every answer names its **protocol**:

* `context` (query-agnostic): system + media are prefilled and compressed before any question; the
  question and the assistant header run through the compressed cache. One compressed media cache serves
  every question (each question and its answer are appended, then cut back).
* `query-aware`: system + media + question are compressed (the question's attention is available to
  the method); the assistant header runs through the compressed cache, so the first answer token already
  depends on what was kept. With several questions the full media cache is prefilled once and each
  question compresses its own copy.
* `prefill`: the whole prompt, header included, is prefilled before compression — today's kvpress-style
  "compress during prefill". The first answer token is computed from the full cache (for every method but
  FastV's `prune` mode, which drops tokens inside that prefill), so for short answers this protocol is
  blind to compression; it exists to show that.
* `stream`: like `context`, but system + media are prefilled chunk by chunk and compressed after every
  chunk, so the cache never holds the whole clip (`acckv_cli.answer.stream.StreamSession`).

Cut back: a question only ever *appends* to the per-layer tensors (a new tensor each time, see
`DynamicLayer.update`), and compression replaces them, so remembering each layer's (keys, values) and
putting them back restores the cache exactly, without a copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from acckv_cli.errors import ProtocolError
from acckv_cli.model.generation import embed_prompt, eos_token_ids, forward_segment, greedy_decode, split_words
from acckv_cli.model.layout import TokenLayout
from acckv_cli.media.decode import DecodedMedia
from acckv_cli.methods import Budget, CompressionMethod
from acckv_cli.methods.attention import per_layer_attention
from acckv_cli.methods.stash import AttentionNeeds, Stash
from acckv_cli.model.load import LoadedModel, cast_inputs
from acckv_cli.model.prompt import MediaPrompt, QuestionPrompt
from acckv_cli.answer.report import RetentionReport

PROTOCOLS = ("query-aware", "context", "prefill", "stream")
# Protocols whose media cache is compressed before any question (the question runs through it).
MEDIA_COMPRESSED = ("context", "stream")


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return name


@dataclass
class Answer:
    """One question's answer and everything measured on the way.

    first_logits: fp32 [V] distribution of the first answer token (what the evaluation compares).
    report:       the compression this answer was generated from (shared by all questions under `context`).
    timings:      seconds; costs paid once per clip appear in the first answer, and `reused` lists them in
                  the answers that did not pay them again.
    """

    question: str
    text: str
    token_ids: list[int]
    first_logits: torch.Tensor
    protocol: str
    report: RetentionReport
    layout: TokenLayout          # the compressed part of the prompt (what `report` is about)
    prompt_layout: TokenLayout   # the whole prompt
    timings: dict
    reused: list[str] = field(default_factory=list)
    kept: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> sorted kept prompt indices


def snapshot(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def restore(cache, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for layer, (keys, values) in zip(cache.layers, saved):
        layer.keys, layer.values = keys, values


def cache_from(config, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A new cache holding `saved`'s per-layer (keys, values), as a prefill leaves it: the inverse of `snapshot`
    for a media cache read back from disk (`acckv_cli.answer.cachefile`)."""
    cache = DynamicCache(config=config.get_text_config(decoder=True))
    for layer, (keys, values) in zip(cache.layers, saved, strict=True):
        layer.update(keys, values)  # initialises the layer (device, dtype) as the first prefill does
    return cache


@dataclass
class MediaCache:
    """The prefilled prefix of a clip: a cache holding system + media, and how it was made.

    `run` is the compression applied to it (context protocol) or None (full cache, other protocols);
    `stash` records what query-aware scoring needs from the prefix rows. `costs` ({"decode": s, "encode": s})
    is set when making this cache decoded and encoded the media itself (streaming does, chunk by chunk, for
    every media cache): its first answer reports them, later ones list them as reused. None: the session's
    once-per-clip costs apply.
    """

    cache: DynamicCache
    saved: list
    run: object | None
    stash: Stash | None
    prefill_s: float
    used: int = 0
    costs: dict | None = None


class ClipSession:
    """A clip's media prompt, encoded once, answering questions under any protocol, method and budget.

    >>> session = ClipSession(lm, media.decode("clip.mp4"))
    >>> answers = session.ask(["What instrument plays?", "What colour is the square?"], get_method("acckv"),
    ...                       Budget(0.2), protocol="context")
    """

    def __init__(self, lm: LoadedModel, media: DecodedMedia, max_pixels: int | None = None):
        self.lm = lm
        self.prompt = MediaPrompt.build(lm, media, max_pixels)
        self.decode_s = media.decode_seconds
        self.encode_s = self.prompt.processor_s
        self._embedded: dict | None = None
        self.eos = eos_token_ids(lm.thinker, lm.processor.tokenizer)
        self._paid = {"decode", "encode"}  # once-per-clip costs not yet reported in an answer

    @classmethod
    def from_prompt(cls, lm: LoadedModel, prompt, embedded: dict, eos: set[int] | None = None) -> "ClipSession":
        """A session over an already built prompt (anything with `length`, `positions`, `layout` and
        `question(text) -> QuestionPrompt`) and its decoder inputs; the benchmark uses synthetic ones."""
        session = cls.__new__(cls)
        session.lm, session.prompt, session._embedded = lm, prompt, embedded
        session.decode_s = session.encode_s = 0.0
        session.eos = set(eos or ())
        session._paid = {"decode", "encode"}
        return session

    # --- building blocks ------------------------------------------------------------------------------
    @property
    def embedded(self) -> dict:
        """Decoder inputs of the prefix (encoders run on first use only)."""
        if self._embedded is None:
            start = time.perf_counter()
            self._embedded = cast_inputs(embed_prompt(self.lm.thinker, cast_inputs(self.prompt.inputs, self.lm.dtype),
                                                      self.prompt.positions, self.prompt.use_audio_in_video),
                                         self.lm.dtype)
            self.encode_s += time.perf_counter() - start
        return self._embedded

    def media_cache(self, method: CompressionMethod | None = None, budget: Budget | None = None,
                    needs: AttentionNeeds | None = None) -> MediaCache:
        """Prefill system + media once: compressed by `method` (context protocol), or full with a stash."""
        embedded = self.embedded
        cache = DynamicCache(config=self.lm.thinker.config.get_text_config(decoder=True))
        start = time.perf_counter()
        with torch.inference_mode(), per_layer_attention(self.lm.thinker):
            if method is not None:
                with method(self.lm.thinker, self.prompt.layout, budget) as run:
                    forward_segment(self.lm.thinker, cache, self.prompt.positions, embedded=embedded, logits=False)
                stash = None
            else:
                run, stash = None, Stash(needs)
                with stash.recording(self.lm.thinker):
                    forward_segment(self.lm.thinker, cache, self.prompt.positions, embedded=embedded, logits=False)
        return MediaCache(cache, snapshot(cache), run, stash, time.perf_counter() - start)

    def answer(self, question: str, media_cache: MediaCache, protocol: str,
               method: CompressionMethod | None = None, budget: Budget | None = None,
               max_new_tokens: int = 32) -> Answer:
        """Answer one question from `media_cache` (made by `media_cache()` for this protocol)."""
        check_protocol(protocol)
        prompt = self.prompt.question(question)
        thinker, cache = self.lm.thinker, media_cache.cache
        timings = {"decode_s": 0.0, "encode_s": 0.0,
                   "media_prefill_s": media_cache.prefill_s if media_cache.used == 0 else 0.0}
        reused = [] if media_cache.used == 0 else ["media_prefill"]
        for cost in ("decode", "encode"):
            if media_cache.costs is not None:  # paid by this media cache itself (streaming)
                if media_cache.used == 0:
                    timings[f"{cost}_s"] = media_cache.costs[cost]
                else:
                    reused.append(cost)
            elif cost in self._paid:
                timings[f"{cost}_s"] = self.decode_s if cost == "decode" else self.encode_s
                self._paid.discard(cost)
            else:
                reused.append(cost)
        media_cache.used += 1
        restore(cache, media_cache.saved)
        start = time.perf_counter()
        try:
            with torch.inference_mode(), per_layer_attention(thinker):
                first, run, layout, cache = self._prompt_rest(prompt, media_cache, protocol, method, budget)
                mid = time.perf_counter()
                ids = greedy_decode(thinker, cache, first, prompt.next_positions(), max_new_tokens, self.eos)
        finally:
            restore(cache, media_cache.saved)  # nothing of this question stays for the next one
        end = time.perf_counter()
        timings.update(question_prefill_s=mid - start, generate_s=end - mid)
        text = ""
        if self.lm.processor is not None:
            text = self.lm.processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
            text = split_words(text, self.lm.answer_words)
        report = RetentionReport.from_run(run, layout)
        return Answer(question, text, ids, first.cpu(), protocol, report, layout, prompt.layout,
                      {k: round(v, 4) for k, v in timings.items()}, reused,
                      {r["layer"]: r["keep"] for r in run.layers})

    def _prompt_rest(self, prompt: QuestionPrompt, media_cache: MediaCache, protocol: str, method, budget):
        """Run the prompt after the media; return (first-token logits, compression run, compressed layout,
        the cache decoding continues on)."""
        thinker, cache = self.lm.thinker, media_cache.cache
        if protocol in MEDIA_COMPRESSED:
            if media_cache.run is None:
                raise ValueError(f"the {protocol} protocol needs a media cache compressed by the method")
            ids, pos = prompt.span(prompt.media_end, prompt.length)
            return forward_segment(thinker, cache, pos, ids), media_cache.run, self.prompt.layout, cache
        if media_cache.stash is None:
            raise ValueError(f"the {protocol} protocol needs a full media cache")
        end = prompt.question_end if protocol == "query-aware" else prompt.length
        layout = prompt.layout.prefix(end)
        if method.single_forward:  # the method changes the prefill itself: media and question in one forward
            cache = DynamicCache(config=thinker.config.get_text_config(decoder=True))
            with method(thinker, layout, budget) as run:
                first = forward_segment(thinker, cache, prompt.positions[:, :, :end],
                                        embedded=self._with_tokens(prompt, end), logits=end == prompt.length)
            # decoding continues on this cache; the shared media cache is not touched
        else:
            with method(thinker, layout, budget, stash=media_cache.stash) as run:
                ids, pos = prompt.span(prompt.media_end, end)
                first = forward_segment(thinker, cache, pos, ids, logits=end == prompt.length)
        if end < prompt.length:
            ids, pos = prompt.span(end, prompt.length)
            first = forward_segment(thinker, cache, pos, ids)
        return first, run, layout, cache

    def _with_tokens(self, prompt: QuestionPrompt, end: int) -> dict:
        """The prefix's decoder inputs extended by the prompt tokens [media_end, end) (one-forward prefill).

        The family says how its extra decoder inputs extend (Qwen3-Omni's deepstack mask grows by False).
        """
        ids, _ = prompt.span(prompt.media_end, end)
        tokens = self.lm.thinker.get_decoder().embed_tokens(ids)
        return self.lm.family.extend_decoder_inputs(self.embedded, tokens)

    # --- convenience ----------------------------------------------------------------------------------
    def ask(self, questions: list[str], method: CompressionMethod, budget: Budget, protocol: str = "query-aware",
            max_new_tokens: int = 32) -> list[Answer]:
        """Answer every question, prefilling the media once (compressed once under `context`)."""
        media_cache = self.media_cache_for(protocol, method, budget)
        return [self.answer(q, media_cache, protocol, method, budget, max_new_tokens) for q in questions]

    def media_cache_for(self, protocol: str, method: CompressionMethod, budget: Budget) -> MediaCache:
        """The media cache `protocol` answers from: compressed by `method` (context) or full with a stash.

        `stream` is served by `acckv_cli.answer.stream.StreamSession`, which builds its prompt without pixels.
        """
        if check_protocol(protocol) == "stream":
            raise ProtocolError("the stream protocol needs a StreamSession (acckv_cli.answer.stream)")
        if protocol == "context":
            return self.media_cache(method, budget)
        return self.media_cache(needs=method.attention_needs())
