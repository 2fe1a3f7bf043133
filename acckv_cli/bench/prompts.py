"""Synthetic prompts laid out like Qwen2.5-Omni's audio-in-video chat prompt, without a processor.

Ordinary token ids with explicit 4-row position ids and the `TokenLayout` that `build_layout` derives from
them: `synthetic_prompt` (exactly N tokens with the modality mix of a 640×360 clip at 2 fps),
`synthetic_clip` (a clip of a given length, laid out by time) and `SyntheticMediaPrompt` (either, split
into the media prefix and the question as `prompt.MediaPrompt` splits a real one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from acckv_cli.bench.shapes import POSITION_ID_PER_SECONDS, ModelShape
from acckv_cli.model.layout import Modality, TokenLayout, build_layout
from acckv_cli.model.prompt import QuestionPrompt

FPS = 2.0
SECOND_PER_GRID = 2 / FPS            # temporal_patch_size 2 / fps
AUDIO_PER_CHUNK = 50                 # 25 audio tokens/s × 2-s chunks
AUDIO_PER_SECOND = 25
QUESTION = "What instrument plays while the red circle is visible?"
SYSTEM_TOKENS = 30                   # Qwen2.5-Omni's default system prompt is ≈ 35 tokens
QUESTION_TOKENS = 12


def _pair_grid(tokens: int) -> tuple[int, int]:
    """(rows, cols) of a merged frame grid with `tokens` cells, as square as the divisors allow."""
    rows = max(d for d in range(1, int(math.isqrt(tokens)) + 1) if tokens % d == 0)
    return rows, tokens // rows


def _media_plan(media: int, per_pair: int) -> tuple[list[tuple[int, int]], int]:
    """2-s chunks `(frame_pairs, audio_tokens)` holding `media` tokens, and tokens left over (→ question)."""
    chunk = 2 * per_pair + AUDIO_PER_CHUNK
    chunks = [(2, AUDIO_PER_CHUNK)] * (media // chunk)
    rest = media - chunk * len(chunks)
    pairs = min(2, rest // per_pair)
    audio = min(AUDIO_PER_CHUNK, rest - pairs * per_pair)
    if pairs or audio:
        chunks.append((pairs, audio))
    return chunks, rest - pairs * per_pair - audio


@dataclass
class SyntheticPrompt:
    input_ids: torch.Tensor      # [1, L] ordinary text token ids
    position_ids: torch.Tensor   # [4, 1, L]: text row, then mRoPE t, h, w
    layout: TokenLayout
    next_position: torch.Tensor  # [4, 1, 1] position of the first generated token
    tokens_per_pair: int


class _ChatTokens:
    """The modality labels and mRoPE (t, h, w) positions of a chat prompt, placed as `get_rope_index`
    places them: a text token advances all three by one, both media bos share a position, both eos sit at
    the media's largest position + 1. The media tokens in between are appended by the caller."""

    def __init__(self) -> None:
        self.labels: list[int] = []
        self.pos: list[tuple[int, int, int]] = []
        self.next = 0

    def text(self, kind: Modality, count: int = 1) -> None:
        for _ in range(count):
            self.labels.append(int(kind))
            self.pos.append((self.next, self.next, self.next))
            self.next += 1

    def open_media(self, system: int) -> int:
        """The system turn, the user header and both bos; returns the media's position origin."""
        D, T = Modality.DELIM, Modality.TEXT
        self.text(D), self.text(T, 2), self.text(Modality.SYSTEM, system), self.text(D), self.text(T)  # system
        self.text(D), self.text(T, 2)                                 # <|im_start|>user\n
        self.labels += [int(D)] * 2                                   # vision_bos, audio_bos share p
        self.pos += [(self.next, self.next, self.next)] * 2
        return self.next + 1

    def close_media(self, question: int) -> None:
        """Both eos, the question and the assistant header."""
        D, T = Modality.DELIM, Modality.TEXT
        end = max(max(p) for p in self.pos) + 1
        self.labels += [int(D)] * 2                                   # audio_eos, vision_eos share max + 1
        self.pos += [(end, end, end)] * 2
        self.next = end + 1
        self.text(Modality.QUESTION, question), self.text(D), self.text(T)  # question <|im_end|>\n
        self.text(D), self.text(T, 2)                                 # <|im_start|>assistant\n

    def prompt(self, vocab: int, seconds_per_grid: float, seed: int, tokens_per_pair: int,
               question: str | None = None) -> SyntheticPrompt:
        """Random ordinary token ids (no specials) at these positions, and the layout derived from them."""
        mrope = torch.tensor(self.pos, dtype=torch.long).T            # [3, L]
        layout = build_layout(mrope, torch.tensor(self.labels, dtype=torch.int8), float(POSITION_ID_PER_SECONDS),
                              seconds_per_grid)
        if question is not None:
            layout.extras["question"] = question
        n = len(self.labels)
        position_ids = torch.cat([torch.arange(n)[None], mrope])[:, None]  # [4, 1, L]
        next_position = torch.tensor([n, self.next, self.next, self.next]).view(4, 1, 1)
        gen = torch.Generator().manual_seed(seed + n)
        input_ids = torch.randint(0, vocab - 8, (1, n), generator=gen)
        return SyntheticPrompt(input_ids, position_ids, layout, next_position, tokens_per_pair)


def synthetic_prompt(n: int, shape: ModelShape, seed: int = 0) -> SyntheticPrompt:
    """A prompt of exactly `n` tokens laid out like Qwen2.5-Omni's audio-in-video chat prompt.

    `<|im_start|>system\\n SYSTEM <|im_end|>\\n <|im_start|>user\\n <|vision_bos|><|audio_bos|>
    (V V A)* <|audio_eos|><|vision_eos|> QUESTION <|im_end|>\\n <|im_start|>assistant\\n`, with 2-s chunks
    of two frame pairs then 50 audio tokens, positions as `get_rope_index` builds them (both bos share a
    position, video t = origin + 25·g·second_per_grid, h/w = origin + cell, audio origin + k, both eos at
    max + 1), and the layout derived from them by `build_layout`.
    """
    system = min(SYSTEM_TOKENS, max(2, n // 64))
    question = min(QUESTION_TOKENS, max(2, n // 64))
    fixed = 3 + system + 2 + 3 + 2 + 2 + question + 5
    media = n - fixed
    if media < AUDIO_PER_CHUNK + 2:
        raise ValueError(f"prompt of {n} tokens is too short for the synthetic layout (need ≥ {fixed + 52})")
    # Frame size near the shape's default that leaves the fewest tokens over (they extend the question).
    best = min(range(max(1, shape.tokens_per_pair * 9 // 10), shape.tokens_per_pair * 11 // 10 + 1),
               key=lambda t: (_media_plan(media, t)[1], abs(t - shape.tokens_per_pair)))
    per_pair = min(best, max(1, (media - AUDIO_PER_CHUNK) // 2))
    chunks, left = _media_plan(media, per_pair)
    question += left
    rows, cols = _pair_grid(per_pair)

    tokens = _ChatTokens()
    origin = tokens.open_media(system)
    labels, pos = tokens.labels, tokens.pos
    grid_r = torch.arange(rows).repeat_interleave(cols)
    grid_c = torch.arange(cols).repeat(rows)
    pair = audio = 0
    for pairs, n_audio in chunks:
        for _ in range(pairs):
            t = origin + round(pair * SECOND_PER_GRID * POSITION_ID_PER_SECONDS)
            labels += [int(Modality.VIDEO)] * per_pair
            pos += [(t, origin + int(r), origin + int(c)) for r, c in zip(grid_r, grid_c)]
            pair += 1
        labels += [int(Modality.AUDIO)] * n_audio
        pos += [(origin + k, origin + k, origin + k) for k in range(audio, audio + n_audio)]
        audio += n_audio
    tokens.close_media(question)
    assert len(labels) == n, (len(labels), n)
    return tokens.prompt(shape.vocab, SECOND_PER_GRID, seed, per_pair, QUESTION)


def synthetic_clip(seconds: float, vocab: int, fps: float = 2.0, pair_tokens: int = 8, seed: int = 0) -> SyntheticPrompt:
    """A Qwen2.5-Omni audio-in-video chat prompt for `seconds` of media: ids [1, L], positions [4, 1, L].

    Same structure and positions as `synthetic_prompt` (2-s chunks of frame pairs then audio, both
    bos and both eos sharing a position), laid out by time: ⌊seconds·fps/2⌋ frame pairs of `pair_tokens`
    cells and 25 audio tokens per second.
    """
    spg = 2.0 / fps
    n_pairs, n_audio = int(seconds * fps) // 2, int(seconds * AUDIO_PER_SECOND)
    per_chunk = int(POSITION_ID_PER_SECONDS * 2)
    rows, cols = _pair_grid(pair_tokens)
    tokens = _ChatTokens()
    origin = tokens.open_media(SYSTEM_TOKENS)
    labels, pos = tokens.labels, tokens.pos
    video_t = [round(g * spg * POSITION_ID_PER_SECONDS) for g in range(n_pairs)]
    pair = audio = 0
    n_chunks = max(video_t[-1] // per_chunk + 1 if n_pairs else 0, math.ceil(n_audio / per_chunk))
    for chunk in range(n_chunks):
        while pair < n_pairs and video_t[pair] < (chunk + 1) * per_chunk:
            labels += [int(Modality.VIDEO)] * pair_tokens
            pos += [(origin + video_t[pair], origin + r, origin + c) for r in range(rows) for c in range(cols)]
            pair += 1
        stop = min(n_audio, (chunk + 1) * per_chunk)
        labels += [int(Modality.AUDIO)] * (stop - audio)
        pos += [(origin + k,) * 3 for k in range(audio, stop)]
        audio = stop
    tokens.close_media(QUESTION_TOKENS)
    return tokens.prompt(vocab, spg, seed, pair_tokens)


@dataclass
class SyntheticMediaPrompt:
    """A synthetic prompt split like `prompt.MediaPrompt`: system + media prefix, then question + header."""

    input_ids: torch.Tensor   # [1, L] the whole prompt
    all_positions: torch.Tensor  # [4, 1, L]
    whole_layout: object
    length: int               # prefix length (after the closing media delimiters)

    @classmethod
    def split(cls, prompt) -> "SyntheticMediaPrompt":
        media = prompt.layout.media_mask.nonzero().squeeze(1)
        text_after = prompt.layout.post_media_text_mask().nonzero().squeeze(1)
        questions = (prompt.layout.modality == 2).nonzero().squeeze(1)  # Modality.QUESTION
        first_question = int(questions[questions > int(media.max())].min())
        assert int(text_after.min()) < first_question  # the closing delimiters belong to the prefix
        return cls(prompt.input_ids, prompt.position_ids, prompt.layout, first_question)

    @property
    def positions(self) -> torch.Tensor:
        return self.all_positions[:, :, :self.length]

    @property
    def layout(self):
        return self.whole_layout.prefix(self.length)

    def question(self, text: str) -> QuestionPrompt:
        """Every synthetic question has the same tokens (only their count matters for time)."""
        layout = self.whole_layout.prefix(len(self.whole_layout))
        layout.extras["question"] = text
        question_end = self.length + int((layout.modality[self.length:] == 2).sum())
        return QuestionPrompt(text, self.input_ids, self.all_positions, layout, self.length, question_end)
