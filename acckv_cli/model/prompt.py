"""Prompt segments: the system + media prefix that every question about a clip shares, and each question.

A chat prompt for one clip and one question is

    [system turn, user header, <|vision_bos|> … media … <|vision_eos|>] [question] [<|im_end|>\\n<|im_start|>assistant\\n]
     ──────────────── prefix (media_end) ──────────────────────────────  ─ question ─  ────── suffix (header) ──────

The prefix goes through the processor (and the encoders) once per clip; each question and the suffix are
plain tokens. The token ids of the three pieces are exactly those of the processor on the whole prompt
(tests check it), and every piece is run with the *whole* prompt's 3-D mRoPE positions from the model's
own `get_rope_index`, so a prompt prefilled in segments is the prompt prefilled at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from acckv_cli.errors import PromptError
from acckv_cli.model.layout import TokenLayout, layout_for_inputs
from acckv_cli.media.decode import DecodedMedia
from acckv_cli.model.load import LoadedModel, conversation, process
from acckv_cli.model.positions import check_prompt

# Stands for the question while the chat template is rendered, so the text around it can be split off.
_SENTINEL = "ACCKVQUESTIONSLOT"


def split_template(lm: LoadedModel, media: DecodedMedia) -> tuple[str, str]:
    """The chat template rendered around a placeholder question: (prefix text, suffix text)."""
    text = lm.processor.apply_chat_template(conversation(media, _SENTINEL), add_generation_prompt=True,
                                            tokenize=False)
    if text.count(_SENTINEL) != 1:
        raise PromptError("the chat template does not place the question exactly once")
    prefix, suffix = text.split(_SENTINEL)
    return prefix, suffix


@dataclass
class MediaPrompt:
    """The prefix of a clip's prompt (system + media), processed once and shared by all its questions.

    inputs:    processor output for the prefix text (input_ids [1, P], media features), on the model device
    suffix:    chat-template text that follows the question (the assistant header)
    """

    lm: LoadedModel
    inputs: dict
    use_audio_in_video: bool
    suffix: str
    processor_s: float
    notices: list[str] = field(default_factory=list)
    _layout: TokenLayout | None = field(default=None, repr=False)

    @classmethod
    def build(cls, lm: LoadedModel, media: DecodedMedia, max_pixels: int | None = None) -> "MediaPrompt":
        """Render the chat template around a placeholder question, and run the processor on the prefix."""
        start = time.perf_counter()
        prefix, suffix = split_template(lm, media)
        notices: list[str] = []
        inputs, use_audio_in_video = process(lm, prefix, media, max_pixels, notices)
        inputs = {k: (v.to(lm.device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
        prompt = cls(lm, inputs, use_audio_in_video, suffix, time.perf_counter() - start, notices)
        check_prompt(lm, prompt.layout)  # the clip fits the model's position range
        return prompt

    @property
    def length(self) -> int:
        return int(self.inputs["input_ids"].shape[1])

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def layout(self) -> TokenLayout:
        """Token layout of the prefix alone (what the `context` protocol compresses)."""
        if self._layout is None:
            self._layout = layout_for_inputs(self.lm.thinker, self.lm.processor, self._rope_inputs(self.input_ids),
                                             self.use_audio_in_video)
        return self._layout

    @property
    def positions(self) -> torch.Tensor:
        """[4, 1, P]: text row and 3-D mRoPE rows of the prefix (the whole prompt's first P positions)."""
        text_row = torch.arange(self.length, device=self.lm.device)[None, None]
        return torch.cat([text_row, self.layout.positions[:, None].to(self.lm.device)])

    def _rope_inputs(self, input_ids: torch.Tensor) -> dict:
        """What `get_rope_index` needs for a prompt that starts with this prefix."""
        keep = ("video_grid_thw", "feature_attention_mask", "video_second_per_grid")
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                **{k: self.inputs[k] for k in keep if k in self.inputs}}

    def question(self, question: str) -> "QuestionPrompt":
        """The whole prompt for `question`: its token ids after the prefix, positions and layout."""
        tokenizer = self.lm.processor.tokenizer
        q_ids = tokenizer(question, add_special_tokens=False, return_tensors="pt")["input_ids"]
        s_ids = tokenizer(self.suffix, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = torch.cat([self.input_ids.cpu(), q_ids, s_ids], dim=1).to(self.lm.device)
        layout = layout_for_inputs(self.lm.thinker, self.lm.processor, self._rope_inputs(ids),
                                   self.use_audio_in_video)
        layout.extras["question"] = question
        text_row = torch.arange(ids.shape[1], device=self.lm.device)[None, None]
        positions = torch.cat([text_row, layout.positions[:, None].to(self.lm.device)])  # [4, 1, L]
        return QuestionPrompt(question, ids, positions, layout, self.length, self.length + q_ids.shape[1])


@dataclass
class QuestionPrompt:
    """The whole prompt of one question: ids [1, L], positions [4, 1, L] (text row + t/h/w), layout.

    media_end: where the question starts (= the prefix length); question_end: where the suffix starts.
    """

    question: str
    input_ids: torch.Tensor
    positions: torch.Tensor
    layout: TokenLayout
    media_end: int
    question_end: int

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    def span(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [1, end − start], positions [4, 1, end − start]) of prompt tokens [start, end)."""
        return self.input_ids[:, start:end], self.positions[:, :, start:end]

    def next_positions(self) -> torch.Tensor:
        """Positions [4, 1, 1] of the first generated token: every row one past the prompt's last token."""
        return self.positions[:, :, -1:] + 1
