"""What one training step of the demo model sees: a suite, its clips, their questions, processor inputs.

Every step is a pure function of (seed, step), so a run resumed from a checkpoint sees exactly the clips
and questions it would have seen without stopping. A step draws one suite (`SUITE_MIX`) and that suite's
number of clips (`CLIPS_PER_STEP`: fewer clips when they are longer, so steps cost about the same). Each
clip is rendered in memory at exactly 2 fps and 16 kHz (the rates `acckv` samples files at), resized to the
size `acckv` decodes a 320×240 file at, and run through the same processor path as inference
(`model.load.process`: a soundtrack longer than the model's audio window arrives as per-window features).
Up to `MAX_TURNS` of the clip's questions are asked as isolated turns; `MC_SHARE` of them as multiple
choice with four lettered options (`evaluation.choices`), the answer being the letter (v2) or the option's
text (`Recipe.mc_answer`). A `Recipe` changes the mix, the multiple-choice share, the multiple-choice answer
and which families are asked first (a later training stage's focus).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from acckv_cli.demo.auxiliary import batch_targets
from acckv_cli.demo.sequence import (answer_lens_targets, batch_sequence_targets, option_letter_targets,
                                     option_targets)
from acckv_cli.evaluation.choices import LETTERS, format_question
from acckv_cli.media.decode import DecodedMedia
from acckv_cli.media.frames import fit_to_pixels
from acckv_cli.media.probe import MediaInfo
from acckv_cli.model.load import LoadedModel, process
from acckv_cli.synth.avqa import ANSWER_COLOURS, QA, Example, all_questions, make_example
from acckv_cli.synth.events import INSTRUMENTS, SHAPES
from acckv_cli.synth.render import render_clip
from acckv_cli.synth.sparse import COUNT_WORDS, all_sparse_questions, make_sparse_example

FPS = 2.0
MAX_PIXELS = 36 * 28 * 28  # the demo model's own video range: a 320×240 file → 196×140, 35 tokens per frame pair
SUITE_MIX = {"core": 0.3, "sparse": 0.55, "long": 0.15}
CLIPS_PER_STEP = {"core": 4, "sparse": 2, "long": 1}
MAX_TURNS = 8
# A long clip asks one question per forward: with one turn the causal mask already isolates it, so attention
# keeps sdpa's fast path (eight isolated turns need a dense 4-D mask: 21 s instead of 7.6 s for 10k tokens).
TURNS = {"core": MAX_TURNS, "sparse": MAX_TURNS, "long": 1}
MC_SHARE = 0.3
OPTIONS = 4
ANSWER_CLASSES = (tuple(ANSWER_COLOURS), SHAPES, INSTRUMENTS, COUNT_WORDS[1:])
MC_ANSWERS = ("letter", "text")


@dataclass(frozen=True)
class Recipe:
    """What a training stage samples. The defaults are v2's first stage."""

    mix: dict[str, float] = field(default_factory=lambda: dict(SUITE_MIX))
    mc_share: float = MC_SHARE
    focus: tuple[str, ...] = ()   # question families asked before the others (when a clip has more than MAX_TURNS)
    sequence_targets: bool = False  # compute sequence.py's targets (order, counts, options)
    answer_lens: bool = False       # compute sequence.answer_lens_targets (the answer word where a letter is chosen)
    mc_answer: str = "letter"       # a multiple-choice turn's target: "letter" (v2) or the option's "text"

    def __post_init__(self):
        if self.mc_answer not in MC_ANSWERS:
            raise ValueError(f"mc_answer must be one of {', '.join(MC_ANSWERS)}, not {self.mc_answer!r}")

    def as_card(self) -> dict:
        return {"mix": self.mix, "mc_share": self.mc_share, "focus": list(self.focus),
                "sequence_targets": self.sequence_targets, "answer_lens": self.answer_lens,
                "mc_answer": self.mc_answer}

    @classmethod
    def from_card(cls, card: dict) -> "Recipe":
        return cls(dict(card.get("mix", SUITE_MIX)), card.get("mc_share", MC_SHARE), tuple(card.get("focus", ())),
                   card.get("sequence_targets", False), card.get("answer_lens", False),
                   card.get("mc_answer", "letter"))


def step_plan(seed: int, step: int, mix: dict[str, float] | None = None) -> tuple[str, list[int]]:
    """The suite and the training-clip indices of `step` (disjoint across steps within a suite)."""
    mix = mix or SUITE_MIX
    rng = random.Random(seed * 1_000_003 + step)
    suite = rng.choices(list(mix), weights=list(mix.values()))[0]
    n = CLIPS_PER_STEP[suite]
    first = step * max(CLIPS_PER_STEP.values()) + seed * 2_000_000
    return suite, list(range(first, first + n))


def training_example(suite: str, index: int) -> tuple[Example, list[QA]]:
    """The train-split clip `index` of a suite and every question it answers."""
    if suite == "core":
        example = make_example("train", index)
        return example, all_questions(example)
    example = make_sparse_example(suite, "train", index)
    return example, all_sparse_questions(example)


def as_decoded(frames: np.ndarray) -> np.ndarray:
    """Frames at the size `acckv` decodes a file of this size at, so that training sees the token grid
    (and aspect ratio) of inference: the processor alone would resize 320×240 to 168×140, not 196×140."""
    height, width = frames.shape[1:3]
    h, w = fit_to_pixels(height, width, MAX_PIXELS)
    if (h, w) == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


def decoded_media(example: Example, np_rng: np.random.Generator | None = None) -> DecodedMedia:
    """The clip as `acckv` would decode it from a file; with `np_rng`, mild noise augmentation."""
    spec = replace(example.spec, fps=FPS)
    frames, audio, rate = render_clip(spec)
    frames = as_decoded(frames)
    if np_rng is not None:
        frames = np.clip(frames.astype(np.float32) + np_rng.normal(0, 4, frames.shape), 0, 255).astype(np.uint8)
        audio = (audio * np_rng.uniform(0.6, 1.2) + np_rng.normal(0, 0.003, audio.shape)).astype(np.float32)
    info = MediaInfo(path=example.key, duration_s=spec.duration_s, has_video=True, has_audio=True, native_fps=FPS,
                     width=spec.width, height=spec.height, n_frames=len(frames), video_codec=None, audio_codec=None,
                     audio_channels=1, audio_rate=rate)
    return DecodedMedia(info, frames, np.arange(len(frames)) / FPS, FPS, audio, rate)


def choice_options(qa: QA, rng: random.Random) -> list[str]:
    """Four options in random order: the answer and three others of its kind."""
    kind = next(c for c in ANSWER_CLASSES if qa.answer in c)
    options = [qa.answer, *rng.sample([a for a in kind if a != qa.answer], OPTIONS - 1)]
    rng.shuffle(options)
    return options


def as_choice(qa: QA, rng: random.Random, mc_answer: str = "letter") -> tuple[str, str]:
    """The question with four lettered options and its target: the answer's letter, or with
    `mc_answer="text"` the answer's own text (which `choices.parse_choice` reads back as that option)."""
    options = choice_options(qa, rng)
    target = LETTERS[options.index(qa.answer)] if mc_answer == "letter" else qa.answer
    return format_question(qa.question, options), target


def chat(questions: list[QA], rng: random.Random, turns: int = MAX_TURNS, mc_share: float = MC_SHARE,
         focus: tuple[str, ...] = (), mc_answer: str = "letter") -> list[dict]:
    """Up to `turns` questions as consecutive turns in random order (families in `focus` first), some as
    multiple choice (answered as `mc_answer` says)."""
    order = list(questions)
    rng.shuffle(order)
    if focus:  # a stable sort keeps the shuffled order within each group
        order.sort(key=lambda qa: qa.family not in focus)
    out = []
    for i, qa in enumerate(order[:turns]):
        text, answer = as_choice(qa, rng, mc_answer) if rng.random() < mc_share else (qa.question, qa.answer)
        content = [{"type": "video"}, {"type": "text", "text": text}] if i == 0 else text
        out += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    return out


def answer_labels(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """-100 everywhere except the assistant answers and their <|im_end|>."""
    labels = torch.full_like(input_ids, -100)
    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    header = tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
    ids = input_ids.tolist()
    for b, row in enumerate(ids):
        for i, tok in enumerate(row):
            if tok == im_start and row[i + 1:i + 1 + len(header)] == header:
                start = i + 1 + len(header)
                end = row.index(im_end, start)
                labels[b, start:end + 1] = input_ids[b, start:end + 1]
    return labels


def clip_inputs(processor, suite: str, index: int, np_rng: np.random.Generator, py_rng: random.Random,
                recipe: Recipe = Recipe()) -> dict:
    """Processor inputs of one training clip with answer labels and auxiliary per-token targets."""
    example, questions = training_example(suite, index)
    media = decoded_media(example, np_rng)
    lm = LoadedModel(None, processor, "demo-training", torch.device("cpu"), torch.float32)
    turns = chat(questions, py_rng, min(TURNS[suite], MAX_TURNS), recipe.mc_share, recipe.focus, recipe.mc_answer)
    inputs, _ = process(lm, processor.apply_chat_template(turns, tokenize=False), media)
    inputs["labels"] = answer_labels(inputs["input_ids"], processor.tokenizer)
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    audio_tokens = int((inputs["input_ids"] == audio_id).sum())
    spec = replace(example.spec, fps=FPS)
    inputs["aux_targets"] = batch_targets([spec], inputs["video_grid_thw"], [audio_tokens])
    if recipe.answer_lens:
        inputs["lens_targets"] = answer_lens_targets(inputs["input_ids"], inputs["labels"], processor.tokenizer)
        inputs["letter_targets"] = option_letter_targets(inputs["input_ids"], processor.tokenizer)
    if recipe.sequence_targets:
        option_at, correct = option_targets(inputs["input_ids"], inputs["labels"], processor.tokenizer)
        inputs["sequence_targets"] = {**batch_sequence_targets([spec], [audio_tokens]), "option_at": option_at,
                                      "option_correct": correct}
    return inputs


def step_inputs(processor, seed: int, step: int, recipe: Recipe = Recipe()) -> tuple[str, list[dict]]:
    """The suite and per-clip inputs of one step (deterministic in (seed, step, recipe))."""
    suite, indices = step_plan(seed, step, recipe.mix)
    np_rng, py_rng = np.random.default_rng([seed, step]), random.Random(seed * 7_919 + step)
    return suite, [clip_inputs(processor, suite, i, np_rng, py_rng, recipe) for i in indices]


class Steps(torch.utils.data.IterableDataset):
    """Steps `first`…`last - 1`, made in a worker process so that rendering overlaps training."""

    def __init__(self, processor, seed: int, first: int, last: int, recipe: Recipe = Recipe()):
        self.processor, self.seed, self.first, self.last, self.recipe = processor, seed, first, last, recipe

    def __iter__(self):
        torch.set_num_threads(1)
        for step in range(self.first, self.last):
            yield step, *step_inputs(self.processor, self.seed, step, self.recipe)
