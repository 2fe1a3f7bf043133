"""Where a demo model knows the answer: a logit lens at the last prompt position, asked freely and as choices.

    python -m acckv_cli.demo.lens acckv_cli/assets/demo --clips 8 --out results/demo-lens/v2.json

For each core validation question (in-memory clips, as `validate.py` renders them), the question is asked
once freely and once with four lettered options (`data.as_choice`, the template `acckv` sends). At the last
prompt position, every decoder layer's hidden state is read through the model's final norm and `lm_head`,
and the answer word's first token is compared with the other words of its class (instruments, shapes,
colours): the share of questions where it ranks first, per layer. A model that answers multiple choice by
finding the option it knows has the answer word there; the letter's accuracy is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from acckv_cli.demo.checkpoint import load_thinker
from acckv_cli.demo.data import ANSWER_CLASSES, as_choice, decoded_media
from acckv_cli.demo.validate import validation_example
from acckv_cli.evaluation.choices import LETTERS
from acckv_cli.model.load import LoadedModel, process


def first_token(tokenizer, word: str) -> int:
    return tokenizer(word, add_special_tokens=False)["input_ids"][0]


@torch.no_grad()
def last_position(thinker, processor, lm: LoadedModel, media, text: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(hidden state of every decoder layer at the last prompt position, the output logits there)."""
    conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    inputs, _ = process(lm, processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False), media)
    out = thinker(**inputs, output_hidden_states=True, use_cache=False)
    return [h[0, -1] for h in out.hidden_states[1:]], out.logits[0, -1]


@torch.no_grad()
def lens(folder: Path, clips: int) -> dict:
    thinker, processor = load_thinker(folder)
    thinker.eval()
    tokenizer = processor.tokenizer
    lm = LoadedModel(thinker, processor, "demo", torch.device("cpu"), torch.float32)
    norm = thinker.model.language_model.norm
    rng = random.Random(0)
    top: dict[str, list[list[bool]]] = {"free": [], "choice": []}
    letters_right = []
    for index in range(clips):
        example = validation_example("core", index)
        media = decoded_media(example)
        for qa in example.questions:
            kind = next(c for c in ANSWER_CLASSES if qa.answer in c)
            candidates = torch.tensor([first_token(tokenizer, w) for w in kind])
            target = kind.index(qa.answer)
            choice, letter = as_choice(qa, rng)
            for mode, text in (("free", qa.question), ("choice", choice)):
                hidden, logits = last_position(thinker, processor, lm, media, text)
                top[mode].append([int(thinker.lm_head(norm(h))[candidates].argmax()) == target for h in hidden])
                if mode == "choice":
                    ids = torch.tensor([first_token(tokenizer, x) for x in LETTERS[:4]])
                    letters_right.append(LETTERS[int(logits[ids].argmax())] == letter)
    share = {mode: [round(sum(col) / len(col), 3) for col in zip(*rows)] for mode, rows in top.items()}
    return {"model": str(folder), "questions": len(letters_right), "answer_word_first_per_layer": share,
            "letter_accuracy": round(sum(letters_right) / len(letters_right), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="A saved demo model folder")
    parser.add_argument("--clips", type=int, default=8, help="Core validation clips (3 questions each)")
    parser.add_argument("--out", type=Path, default=None, help="Also write the result as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = lens(args.model, args.clips)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
