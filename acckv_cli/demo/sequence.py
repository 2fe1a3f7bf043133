"""Auxiliary targets for the skills v2 did not learn from answers alone: order, counting, lettered options.

Demo model v2 reached 95 % on single brief sounds but stayed at its step-500 level on "what plays right
after the violin?" (46 %) and "how many times does the drum play?" (71 %) through 2,000 steps, and at
chance on multiple choice. Each needs an intermediate fact that no answer token names, so here each gets a
per-token label read by a linear probe from an upper decoder layer (`SEQUENCE_LAYER`), during training only:

- `audio_previous`: at every audio token, the instrument of the last sound that *ended* before it ("none"
  before the first). The tokens of the sound after the violin then carry "previous = violin" next to their
  own instrument, which is what an order question has to find.
- `audio_counts`: at every audio token, how many sounds of each instrument have *started* so far (0–4,
  4 meaning four or more). The last audio token holds the clip's totals, which a count question reads.
- `option_correct`: at the first token of every lettered option of a multiple-choice turn, whether it is
  the right one. Answering with a letter then reduces to copying the letter in front of the flagged option.

Every label depends only on what comes earlier in the sequence, so a causal decoder can compute it.

`answer_lens_targets` serves a loss without a probe (`losses.py`, `--lens-weight`): at the position that
predicts a multiple-choice turn's letter, an upper layer read through the model's own final norm and
`lm_head` must name the answer's word. Measured on v2 (logit lens at the last prompt position, 24 core
validation questions): asked freely, layer 4 names the answer 75 % of the time and layers 5–6 96 %; asked as
multiple choice, no layer does better than 8 % — the model never computes the answer where the letter is
chosen, so there is nothing for a letter lookup to use.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from acckv_cli.demo.auxiliary import AUDIO_TOKENS_PER_SECOND, INSTRUMENT_CLASSES
from acckv_cli.evaluation.choices import LETTERS
from acckv_cli.synth.events import INSTRUMENTS, ClipSpec

MAX_COUNT = 4  # class 4 = four or more


def audio_sequence_targets(spec: ClipSpec, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(previous instrument class per token, (n_tokens, len(INSTRUMENTS)) count-so-far classes)."""
    sounds = sorted(spec.sound_events, key=lambda e: e.start_s)
    t = (np.arange(n_tokens) + 0.5) / AUDIO_TOKENS_PER_SECOND
    previous = np.zeros(n_tokens, dtype=np.int64)
    for sound in sorted(sounds, key=lambda e: e.end_s):  # later ends overwrite earlier ones
        previous[t >= sound.end_s] = INSTRUMENT_CLASSES.index(sound.instrument)
    counts = np.zeros((n_tokens, len(INSTRUMENTS)), dtype=np.int64)
    for sound in sounds:
        counts[t >= sound.start_s, INSTRUMENTS.index(sound.instrument)] += 1
    return previous, np.minimum(counts, MAX_COUNT)


def lettered_options(row: list[int], tokenizer) -> list[tuple[int, int]]:
    """(index of the option text's first token, the letter's id) for every "\n<letter>." option line of `row`."""
    newline, dot = (tokenizer.convert_tokens_to_ids(t) for t in ("Ċ", "."))
    letters = {tokenizer.convert_tokens_to_ids(x) for x in LETTERS}
    return [(i + 3, row[i + 1]) for i in range(len(row) - 3)
            if row[i] == newline and row[i + 1] in letters and row[i + 2] == dot]


def option_targets(input_ids: torch.Tensor, labels: torch.Tensor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (flat, over batch × sequence) of each option's first token and whether it is the answer.

    An option is the token after "\n", a letter, "." in a user turn; its turn's answer is the first labelled
    token after it (`data.answer_labels`), which for a lettered question is the letter.
    """
    positions, correct = [], []
    L = input_ids.shape[1]
    for b, row in enumerate(input_ids.tolist()):
        answer_at = labels[b].ne(-100).nonzero().flatten().tolist()
        for start, letter in lettered_options(row, tokenizer):
            answer = next((row[j] for j in answer_at if j > start - 3), None)
            positions.append(b * L + start)
            correct.append(int(answer == letter))
    return torch.tensor(positions, dtype=torch.long), torch.tensor(correct, dtype=torch.long)


def batch_sequence_targets(specs: list[ClipSpec], audio_tokens_per_clip: list[int]) -> dict[str, torch.Tensor]:
    """Audio targets concatenated over clips in batch order (the order of the audio tokens)."""
    parts = [audio_sequence_targets(s, n) for s, n in zip(specs, audio_tokens_per_clip)]
    return {"audio_previous": torch.from_numpy(np.concatenate([p[0] for p in parts])),
            "audio_counts": torch.from_numpy(np.concatenate([p[1] for p in parts]))}


class SequenceHeads(nn.Module):
    """Linear probes on an upper decoder layer; trained with the model, thrown away afterwards."""

    def __init__(self, hidden: int):
        super().__init__()
        self.audio_previous = nn.Linear(hidden, len(INSTRUMENT_CLASSES))
        self.audio_counts = nn.Linear(hidden, len(INSTRUMENTS) * (MAX_COUNT + 1))
        self.option_correct = nn.Linear(hidden, 2)

    def losses(self, audio: torch.Tensor, options: torch.Tensor,
               targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cross-entropy per head. audio: (Na, hidden); options: (No, hidden) hidden states at option tokens."""
        ce = nn.functional.cross_entropy
        counts = self.audio_counts(audio).view(len(audio), len(INSTRUMENTS), MAX_COUNT + 1)
        out = {"audio_previous": ce(self.audio_previous(audio), targets["audio_previous"]),
               "audio_counts": ce(counts.flatten(0, 1), targets["audio_counts"].flatten())}
        if len(options):
            out["option_correct"] = ce(self.option_correct(options), targets["option_correct"])
        return out


def answer_lens_targets(input_ids: torch.Tensor, labels: torch.Tensor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat positions that predict a lettered answer, the token id of that option's word as a free answer).

    A lettered answer is a labelled token that is a letter and whose turn lists "\n<letter>." options; its
    word is the first token of the free-answer spelling of the option's whole text (answers carry no leading
    space, and the tokenizer spells some words with a lone " " token first).
    """
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    letters = {tokenizer.convert_tokens_to_ids(x) for x in LETTERS}
    positions, words = [], []
    L = input_ids.shape[1]
    for b, row in enumerate(input_ids.tolist()):
        options, answered = lettered_options(row, tokenizer), -1
        for i in labels[b].ne(-100).nonzero().flatten().tolist():
            # the options of this turn: listed after the last lettered answer, the latest per letter
            listed = {letter: start for start, letter in options if answered < start - 3 < i}
            if row[i] not in letters or row[i] not in listed:
                continue
            start = listed[row[i]]
            end = row.index(newline, start) if newline in row[start:] else start + 1
            text = tokenizer.decode(row[start:end]).strip()  # a word may start with a lone " " token
            positions.append(b * L + i - 1)
            words.append(tokenizer(text, add_special_tokens=False)["input_ids"][0])
            answered = i
    return torch.tensor(positions, dtype=torch.long), torch.tensor(words, dtype=torch.long)


def option_letter_targets(input_ids: torch.Tensor, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat positions of every lettered option's first text token, the id of the letter written before it).

    With `answer_lens_targets` these serve the letter lookup: once the choosing position holds the answer word
    and each option's word token holds its own letter, one attention head matching word to word can copy it.
    """
    L = input_ids.shape[1]
    found = [(b * L + start, letter) for b, row in enumerate(input_ids.tolist())
             for start, letter in lettered_options(row, tokenizer)]
    return (torch.tensor([p for p, _ in found], dtype=torch.long), torch.tensor([x for _, x in found], dtype=torch.long))
