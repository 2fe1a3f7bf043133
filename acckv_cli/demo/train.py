"""Train the built-in demo model on SynthAVQA's three suites (core, sparse, long), on CPU, resumably.

    python -m acckv_cli.demo.train --out runs/demo-v2 --init acckv_cli/assets/demo --layers 6
    python -m acckv_cli.demo.train --out runs/demo-v2 --resume          # continue after a stop

The model is the transformers Qwen2.5-Omni thinker class with a small config (`DEMO_SPEC`), its own
tokenizer (trained on the SynthAVQA question templates) and the stock processor with small pixel settings.
Without `--init` it starts from scratch (as v1 did); with `--init DIR --layers N` it starts from a saved
model deepened to N decoder layers (`checkpoint.deepen`). What each step sees is in `data.py`; the loss
(answers only, turns isolated, auxiliary per-token losses) in `losses.py`. A checkpoint is written every
`--checkpoint-every` steps and at `--max-minutes`, so a run can span several sittings; the finished model
is written to `--out` itself.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import torch

from acckv_cli.demo.auxiliary import AuxiliaryHeads
from acckv_cli.demo.checkpoint import CHECKPOINT, deepen, load_checkpoint, load_thinker, save_checkpoint, save_model
from acckv_cli.demo.data import FPS, MAX_PIXELS, MAX_TURNS, MC_ANSWERS, SUITE_MIX, Recipe, Steps, as_decoded  # noqa: F401
from acckv_cli.demo.sequence import SequenceHeads
from acckv_cli.demo.losses import isolate_turns, loss_on_answers  # noqa: F401 (re-exported for tests)
from acckv_cli.demo.validate import quick_validation
from acckv_cli.synth.avqa import answer_vocabulary, question_corpus
from acckv_cli.synth.sparse import sparse_question_corpus
from acckv_cli.testing.tiny import DEFAULT_SYSTEM_PROMPT, TinySpec, build_tiny_thinker

log = logging.getLogger("acckv_cli.demo.train")

# `acckv` decodes 320×240 clips at 193×145 under this pixel cap (frames.fit_to_pixels) and the processor
# rounds that to 196×140: 7×5 = 35 LLM tokens per frame pair, i.e. 35 video tokens per second at 2 fps
# against 25 audio tokens per second — video dominates, as with real videos.
DEMO_SPEC = TinySpec(text_layers=4, hidden=128, heads=4, kv_heads=2, intermediate=384, vision_hidden=64,
                     vision_depth=2, audio_hidden=64, audio_layers=2, feature_chunk_seconds=15,
                     min_pixels=4 * 28 * 28, max_pixels=MAX_PIXELS, seed=0)


DEFAULT_STEPS = 3000


def demo_corpus() -> list[str]:
    return [DEFAULT_SYSTEM_PROMPT, *question_corpus(), " ".join(answer_vocabulary()),
            *answer_vocabulary(), "system user assistant"]


def build_demo_model():
    """A freshly initialised demo thinker and its processor (tokenizer trained on the templates)."""
    return build_tiny_thinker(DEMO_SPEC, corpus=demo_corpus(), vocab_size=640)


def lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def optimizer_for(thinker, heads, lr: float) -> tuple[torch.optim.Optimizer, list]:
    params = list(thinker.named_parameters()) + (list(heads.named_parameters()) if heads else [])
    decay = [p for _, p in params if p.ndim >= 2]
    no_decay = [p for _, p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    return opt, [p for _, p in params]


def starting_point(args) -> tuple[object, object, dict | None, dict]:
    """(thinker, processor, trainer state or None, card) for a fresh, initialised or resumed run."""
    if args.resume and (args.out / CHECKPOINT / "trainer.pt").is_file():
        thinker, processor, state, card = load_checkpoint(args.out)
        if args.steps is not None and args.steps != card["steps"]:  # a shorter (or longer) cosine from here on
            card.setdefault("schedule_changes", []).append({"at_step": state["step"], "from": card["steps"],
                                                            "to": args.steps})
            card["steps"] = args.steps
        log.info("resuming at step %d of %d", state["step"], card["steps"])
        return thinker, processor, state, card
    if args.resume:
        log.info("no checkpoint under %s: starting a new run", args.out)
    thinker, processor = load_thinker(args.init) if args.init else build_demo_model()
    layers = thinker.config.text_config.num_hidden_layers
    if args.layers and args.layers != layers:
        thinker = deepen(thinker, args.layers)
    card = {"what": "acckv demo model: Qwen2.5-Omni thinker architecture, small config, trained on SynthAVQA "
                    "(synthetic shapes + instrument tones: core, sparse and long suites)",
            "init": str(args.init) if args.init else None, "layers": thinker.config.text_config.num_hidden_layers,
            "steps": args.steps or DEFAULT_STEPS, "lr": args.lr, "seed": args.seed, "aux_weight": args.aux_weight,
            "sequence_weight": args.sequence_weight, "lens_weight": args.lens_weight,
            "letter_weight": args.letter_weight, "stop_weight": args.stop_weight, **recipe_from_args(args).as_card(),
            "command": "python -m acckv_cli.demo.train " + " ".join(sys.argv[1:]), "minutes": 0.0, "history": []}
    return thinker, processor, None, card


def recipe_from_args(args) -> Recipe:
    mix = dict(part.split("=") for part in args.mix.split(",")) if args.mix else SUITE_MIX
    return Recipe({k: float(v) for k, v in mix.items()}, args.mc_share,
                  tuple(f for f in (args.focus or "").split(",") if f), args.sequence_weight > 0,
                  args.lens_weight > 0 or args.letter_weight > 0, args.mc_answer)


def probes_for(thinker, card: dict) -> torch.nn.ModuleDict:
    """The training-only linear heads the card asks for (auxiliary.py, sequence.py)."""
    hidden = thinker.config.text_config.hidden_size
    probes = torch.nn.ModuleDict()
    if card["aux_weight"] > 0:
        probes["aux"] = AuxiliaryHeads(hidden)
    if card.get("sequence_weight", 0) > 0:
        probes["sequence"] = SequenceHeads(hidden)
    return probes


def _probe(probes: torch.nn.ModuleDict, name: str):
    return probes[name] if name in probes else None


def train(args) -> dict:
    torch.manual_seed(args.seed)
    thinker, processor, state, card = starting_point(args)
    probes = probes_for(thinker, card)
    opt, params = optimizer_for(thinker, probes, args.lr)
    first = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if state["heads"] is not None:
            probes.load_state_dict(state["heads"])
        first = state["step"]
    steps = card["steps"]
    thinker.train()
    start, ema, last_save = time.time(), None, time.time()
    minutes_before = card["minutes"]
    loader = torch.utils.data.DataLoader(Steps(processor, card["seed"], first, steps, Recipe.from_card(card)), batch_size=None,
                                         num_workers=1, prefetch_factor=2)

    def checkpoint(step: int) -> None:
        card["minutes"] = round(minutes_before + (time.time() - start) / 60, 1)
        save_checkpoint(args.out, thinker, processor, opt, probes, step, card)

    step = first
    for step, suite, clips in loader:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, card["lr"], warmup=min(100, steps // 20))
        parts_sum: dict[str, float] = {}
        for inputs in clips:
            loss, parts = loss_on_answers(thinker, inputs, processor.tokenizer, _probe(probes, "aux"),
                                          card["aux_weight"], _probe(probes, "sequence"), card.get("sequence_weight", 0.0),
                                          card.get("lens_weight", 0.0), card.get("letter_weight", 0.0),
                                          card.get("stop_weight", 0.0))
            (loss / len(clips)).backward()
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v / len(clips)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        answer = parts_sum["answer"]
        ema = answer if ema is None else 0.98 * ema + 0.02 * answer
        if step % 10 == 0:
            log.info("step %d/%d %s answer %.4f (ema %.4f) %.1f min  %s", step, steps, suite, answer, ema,
                     minutes_before + (time.time() - start) / 60,
                     " ".join(f"{k}={v:.3f}" for k, v in parts_sum.items() if k != "answer"))
        card.setdefault("loss", []).append([step, suite, round(answer, 4)])
        if args.validate_every and (step + 1) % args.validate_every == 0:
            acc = quick_validation(thinker, processor)
            card["history"].append({"step": step + 1, "loss_ema": round(ema, 4), "validation": acc,
                                    "minutes": round(minutes_before + (time.time() - start) / 60, 1)})
            log.info("validation at step %d: %s", step + 1, acc)
            checkpoint(step + 1)
            last_save = time.time()
        elif time.time() - last_save > 60 * args.checkpoint_minutes:
            checkpoint(step + 1)
            last_save = time.time()
        if args.max_minutes and time.time() - start > 60 * args.max_minutes:
            log.info("stopping at step %d: --max-minutes reached (resume with --resume)", step + 1)
            checkpoint(step + 1)
            return card
    checkpoint(steps)
    if not card["history"] or card["history"][-1]["step"] != steps:
        card["history"].append({"step": steps, "validation": quick_validation(thinker, processor),
                                "minutes": card["minutes"]})
    save_model(thinker, processor, args.out, card)
    log.info("done: %d steps in %.1f min", steps, card["minutes"])
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Run folder: checkpoints, then the finished model")
    parser.add_argument("--init", type=Path, default=None, help="Start from this saved model instead of a fresh one")
    parser.add_argument("--layers", type=int, default=None, help="Deepen the starting model to this many layers")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"Length of the cosine schedule (default {DEFAULT_STEPS}; with --resume: change it from there)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="Torch threads for the training process (rendering runs in one more process)")
    parser.add_argument("--validate-every", type=int, default=500)
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--aux-weight", type=float, default=0.3,
                        help="Weight of each per-token auxiliary loss (acckv_cli/demo/auxiliary.py); 0 turns them off")
    parser.add_argument("--sequence-weight", type=float, default=0.0,
                        help="Weight of each order/count/option loss (acckv_cli/demo/sequence.py); 0 turns them off")
    parser.add_argument("--lens-weight", type=float, default=0.0,
                        help="Weight of the answer-lens loss on multiple-choice turns (sequence.answer_lens_targets); "
                             "0 turns it off")
    parser.add_argument("--letter-weight", type=float, default=0.0,
                        help="Weight of the option-letter loss (sequence.option_letter_targets); 0 turns it off")
    parser.add_argument("--stop-weight", type=float, default=0.0,
                        help="Weight of the stop loss: each answer's <|im_end|> with most media keys hidden from the "
                             "question turns (losses.stop_loss); 0 turns it off")
    parser.add_argument("--mix", default=None,
                        help="Suite mix, e.g. core=0.2,sparse=0.5,long=0.3 (default: v2's first stage)")
    parser.add_argument("--mc-share", type=float, default=0.3, help="Share of turns asked as multiple choice")
    parser.add_argument("--mc-answer", choices=MC_ANSWERS, default="letter",
                        help="What a multiple-choice turn is trained to answer: its letter (v2) or the option's text")
    parser.add_argument("--focus", default=None,
                        help="Question families asked first when a clip has more than 8, e.g. order,count")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="Stop after this long in this sitting, with a checkpoint to --resume from")
    parser.add_argument("--resume", action="store_true", help="Continue from --out's checkpoint (settings from it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
