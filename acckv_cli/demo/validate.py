"""Quick full-cache validation during training: per suite and family, from in-memory validation clips.

Clips are rendered as training renders them (no file encoding) and answered through `ClipSession` under
`context`, with the full cache, exactly as `acckv ask` would answer; every question is asked again
as multiple choice (the `mc` line) with options drawn from a fixed seed, scored as `eval` scores a choice
(`choices.parse_choice`: a leading letter, or else the option's text).
"""

from __future__ import annotations

import random

import torch

# imported when training starts (not at the first validation), so that a long run never mixes module versions
from acckv_cli.answer.session import ClipSession
from acckv_cli.demo.data import choice_options, decoded_media
from acckv_cli.evaluation.choices import format_question, parse_choice
from acckv_cli.evaluation.scoring import answer_matches
from acckv_cli.methods import Budget, get_method
from acckv_cli.model.load import LoadedModel
from acckv_cli.synth.avqa import make_example
from acckv_cli.synth.sparse import make_sparse_example

QUICK = {"core": 24, "sparse": 24, "long": 4}


def validation_example(suite: str, index: int):
    return make_example("validation", index) if suite == "core" else make_sparse_example(suite, "validation", index)


@torch.no_grad()
def quick_validation(thinker, processor, clips: dict[str, int] | None = None) -> dict:
    """{suite: {family: accuracy}} plus {"mc": accuracy} over every suite's questions asked as choices."""
    was_training = thinker.training
    thinker.eval()
    lm = LoadedModel(thinker, processor, "demo", torch.device("cpu"), torch.float32)
    out, mc = {}, []
    rng = random.Random(0)
    for suite, n in (clips or QUICK).items():
        correct: dict[str, list[bool]] = {}
        for index in range(n):
            example = validation_example(suite, index)
            choices = [choice_options(qa, rng) for qa in example.questions]
            asked = [qa.question for qa in example.questions] + [format_question(qa.question, options)
                                                                  for qa, options in zip(example.questions, choices)]
            answers = ClipSession(lm, decoded_media(example)).ask(asked, get_method("full"), Budget(1.0), "context",
                                                                 max_new_tokens=4)
            for qa, answer in zip(example.questions, answers):
                correct.setdefault(qa.family, []).append(answer_matches(answer.text, qa.answer))
            for qa, options, answer in zip(example.questions, choices, answers[len(example.questions):]):
                mc.append(parse_choice(answer.text, options) == options.index(qa.answer))
        out[suite] = {f: round(sum(v) / len(v), 3) for f, v in sorted(correct.items())}
    out["mc"] = round(sum(mc) / max(1, len(mc)), 3)
    thinker.train(was_training)
    return out
