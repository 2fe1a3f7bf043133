"""A multiple-choice manifest of the sample clips' questions: every question SynthAVQA can ask of each
`samples/*.mp4` (from the exact ClipSpec in `samples/<name>.json`), with four options — the true answer and
three others of the same kind (instruments, colours or shapes) in a fixed random order, the true answer at
A, B, C, D in turn so that no letter is a better guess than another.

    python -m acckv_cli.evaluation.sample_choices samples-mc.jsonl [--samples samples]
    acckv eval --manifest samples-mc.jsonl -m full

It is the smallest check that multiple choice runs end to end; the answer is written as the option's text
(the reader turns it into its letter), so the file also exercises that path.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

from acckv_cli.synth.avqa import ANSWER_COLOURS, Example, all_questions
from acckv_cli.synth.events import INSTRUMENTS, SHAPES, ClipSpec

KINDS = (tuple(INSTRUMENTS), tuple(ANSWER_COLOURS), tuple(SHAPES))
N_OPTIONS = 4


def options_for(answer: str, seed: str, position: int, n: int = N_OPTIONS) -> list[str]:
    """n-1 other words of the answer's kind drawn by a seed (a string: the same on every run), with the answer
    inserted at `position`."""
    kind = next(k for k in KINDS if answer in k)
    options = random.Random(seed).sample([w for w in kind if w != answer], n - 1)
    options.insert(position % n, answer)
    return options


def sample_rows(samples: Path, relative_to: Path | None = None) -> list[dict]:
    """One row per question of every sample clip that has a ClipSpec beside it; each video's path relative to
    `relative_to` (the manifest's folder, so that the file works from any checkout), else absolute."""
    rows = []
    for spec_path in sorted(samples.glob("*.json")):
        clip = spec_path.with_suffix(".mp4")
        if not clip.is_file():
            continue
        example = Example("samples", 0, ClipSpec.from_json(spec_path.read_text()), ())
        for k, qa in enumerate(all_questions(example)):
            video = os.path.relpath(clip.resolve(), relative_to.resolve()) if relative_to else str(clip.resolve())
            rows.append({"id": f"{spec_path.stem}-q{k}", "video": video, "question": qa.question,
                         "options": options_for(qa.answer, f"{spec_path.stem}|{qa.question}", len(rows)),
                         "answer": qa.answer,
                         "family": qa.family})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSONL manifest to write")
    parser.add_argument("--samples", type=Path, default=Path(__file__).resolve().parents[2] / "samples",
                        help="folder of the sample clips and their ClipSpec json files")
    args = parser.parse_args(argv)
    rows = sample_rows(args.samples, args.out.parent)
    if not rows:
        parser.error(f"no sample clip with a ClipSpec json in {args.samples}")
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} questions with {N_OPTIONS} options each → {args.out}")


if __name__ == "__main__":
    main()
