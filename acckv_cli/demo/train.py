"""Train the built-in demo model on SynthAVQA, from scratch, on CPU.

    python -m acckv_cli.demo.train --out acckv_cli/assets/demo

The model is the transformers Qwen2.5-Omni thinker class with a small config (`DEMO_SPEC`), its own
tokenizer (trained on the SynthAVQA question templates) and the stock processor with small pixel
settings. Each training clip is rendered in memory at exactly 2 fps and 16 kHz (the rates the CLI
samples real files at) and its three questions (one per family) are asked as a three-turn chat, so one
forward pass trains three answers. Loss is on the answer tokens only. Seeds are fixed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from acckv_cli.demo.auxiliary import AuxiliaryHeads, batch_targets, encoder_outputs
from acckv_cli.media.frames import fit_to_pixels
from acckv_cli.synth.avqa import FAMILIES, all_questions, answer_vocabulary, make_example, question_corpus
from acckv_cli.synth.render import render_clip
from acckv_cli.testing.tiny import DEFAULT_SYSTEM_PROMPT, TinySpec, build_tiny_thinker

log = logging.getLogger("acckv_cli.demo.train")

# `acckv` decodes 320×240 clips at 193×145 under this pixel cap (frames.fit_to_pixels) and the processor
# rounds that to 196×140: 7×5 = 35 LLM tokens per frame pair, i.e. 35 video tokens per second at 2 fps
# against 25 audio tokens per second — video dominates, as with real videos.
DEMO_SPEC = TinySpec(text_layers=4, hidden=128, heads=4, kv_heads=2, intermediate=384, vision_hidden=64,
                     vision_depth=2, audio_hidden=64, audio_layers=2, feature_chunk_seconds=15,
                     min_pixels=4 * 28 * 28, max_pixels=36 * 28 * 28, seed=0)
FPS = 2.0


def demo_corpus() -> list[str]:
    return [DEFAULT_SYSTEM_PROMPT, *question_corpus(), " ".join(answer_vocabulary()),
            *answer_vocabulary(), "system user assistant"]


def build_demo_model():
    """A freshly initialised demo thinker and its processor (tokenizer trained on the templates)."""
    return build_tiny_thinker(DEMO_SPEC, corpus=demo_corpus(), vocab_size=640)


def render_training_clip(index: int, rng: np.random.Generator):
    """The example, its spec at exactly 2 fps, frames and 16 kHz audio, with mild noise augmentation."""
    example = make_example("train", index)
    spec = replace(example.spec, fps=FPS)
    frames, audio, rate = render_clip(spec)
    frames = as_decoded(frames)
    noise = rng.normal(0, 4, frames.shape)
    frames = np.clip(frames.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    audio = (audio * rng.uniform(0.6, 1.2) + rng.normal(0, 0.003, audio.shape)).astype(np.float32)
    return example, spec, frames, audio


def as_decoded(frames: np.ndarray) -> np.ndarray:
    """Frames at the size `acckv` decodes a file of this size at, so that training sees the token grid
    (and aspect ratio) of inference: the processor alone would resize 320×240 to 168×140, not 196×140."""
    height, width = frames.shape[1:3]
    h, w = fit_to_pixels(height, width, DEMO_SPEC.max_pixels)
    if (h, w) == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


MAX_TURNS = 8


def chat(questions, rng: random.Random) -> list[dict]:
    """Up to `MAX_TURNS` questions as consecutive turns, in random order (each kind is sometimes first)."""
    order = list(questions)
    rng.shuffle(order)
    order = order[:MAX_TURNS]
    turns = []
    for i, qa in enumerate(order):
        content = [{"type": "video"}, {"type": "text", "text": qa.question}] if i == 0 else qa.question
        turns += [{"role": "user", "content": content}, {"role": "assistant", "content": qa.answer}]
    return turns


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


def make_batch(processor, indices: list[int], np_rng, py_rng):
    texts, videos, audios, specs = [], [], [], []
    for index in indices:
        example, spec, frames, audio = render_training_clip(index, np_rng)
        specs.append(spec)
        texts.append(processor.apply_chat_template(chat(all_questions(example), py_rng), tokenize=False))
        videos.append(frames)
        audios.append(audio)
    size = {"shortest_edge": DEMO_SPEC.min_pixels, "longest_edge": DEMO_SPEC.max_pixels}
    inputs = processor(text=texts, videos=videos, audio=audios, load_audio_from_video=True,
                       audio_from_video_indices=list(range(len(indices))), padding=True,
                       videos_kwargs={"fps": FPS, "size": size, "cap_pixels_per_frame": True},
                       return_tensors="pt")
    inputs.pop("mm_token_type_ids", None)
    inputs["labels"] = answer_labels(inputs["input_ids"], processor.tokenizer)
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    audio_tokens = (inputs["input_ids"] == audio_id).sum(-1).tolist()
    inputs["aux_targets"] = batch_targets(specs, inputs["video_grid_thw"], audio_tokens)
    return inputs


class Batches(torch.utils.data.IterableDataset):
    """Rendered, processed batches, made in a worker process so that rendering overlaps training."""

    def __init__(self, processor, steps: int, batch: int, seed: int, first_clip: int = 0):
        self.processor, self.steps, self.batch, self.seed = processor, steps, batch, seed
        self.first_clip = first_clip

    def __iter__(self):
        torch.set_num_threads(1)
        np_rng, py_rng = np.random.default_rng(self.seed), random.Random(self.seed)
        for step in range(self.steps):
            first = self.first_clip + step * self.batch
            yield make_batch(self.processor, list(range(first, first + self.batch)), np_rng, py_rng)


def isolate_turns(thinker, inputs, tokenizer) -> dict:
    """Make every question turn see only the media prefix and itself, at the positions it has at test time.

    Several questions share one encoding of the clip, but a later turn must not read an earlier answer
    ("What colour is the square?" → purple, then "What shape is purple?"). Each turn gets a block of a
    4-D causal mask and positions that restart right after the media block, as a single question would.
    """
    ids, pad = inputs["input_ids"], inputs["attention_mask"].bool()
    feature_mask = inputs["feature_attention_mask"]
    pos3, _ = thinker.get_rope_index(ids, None, inputs["video_grid_thw"], inputs["attention_mask"], True,
                                     feature_mask.sum(-1), inputs["video_second_per_grid"])
    B, L = ids.shape
    pos4 = torch.cat([(inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)[None], pos3]).clone()
    turn = torch.zeros(B, L, dtype=torch.long)  # 0 = shared prefix, k = k-th question turn
    vision_eos = tokenizer.convert_tokens_to_ids("<|vision_eos|>")
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    user = tokenizer("user", add_special_tokens=False)["input_ids"]
    for b in range(B):
        row = ids[b].tolist()
        prefix_end = max(i for i, t in enumerate(row) if t == vision_eos) + 1
        starts = [prefix_end] + [i for i in range(prefix_end, L) if row[i] == im_start
                                 and row[i + 1:i + 1 + len(user)] == user]
        bounds = starts + [int(pad[b].nonzero().max()) + 1]  # works for left or right padding
        for k, (a, z) in enumerate(zip(bounds[:-1], bounds[1:]), 1):
            turn[b, a:z] = k
            pos4[:, b, a:z] = pos4[:, b, prefix_end:prefix_end + 1] + torch.arange(z - a)
    same = (turn[:, :, None] == turn[:, None, :]) | (turn[:, None, :] == 0)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    mask = same & causal & pad[:, None, :]
    mask |= torch.eye(L, dtype=torch.bool)  # padded queries attend to themselves (no NaN rows)
    inputs = dict(inputs)
    inputs["attention_mask"] = mask[:, None]
    inputs["position_ids"] = pos4
    return inputs


AUX_LAYER = 2  # decoder layer whose audio tokens must already "see" the picture


def loss_on_answers(thinker, inputs, tokenizer=None, heads: AuxiliaryHeads | None = None,
                    aux_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on answer positions only (logits are computed only there), plus the weighted
    auxiliary per-token losses when `heads` is given. Returns (loss, its parts as floats)."""
    labels = inputs.pop("labels")
    aux_targets = inputs.pop("aux_targets", None)
    if tokenizer is not None:
        inputs = isolate_turns(thinker, inputs, tokenizer)
    with encoder_outputs(thinker) as encoded:
        out = thinker.model(**inputs, use_audio_in_video=True, use_cache=False,
                            output_hidden_states=heads is not None)
    hidden = out.last_hidden_state[:, :-1]
    target = labels[:, 1:]
    where = target != -100
    logits = thinker.lm_head(hidden[where])
    loss = torch.nn.functional.cross_entropy(logits.float(), target[where])
    parts = {"answer": loss.item()}
    if heads is not None and aux_targets is not None:
        audio_mid = out.hidden_states[AUX_LAYER][inputs["input_ids"] == thinker.config.audio_token_id]
        aux = heads.losses(encoded["video"], encoded["audio"], audio_mid, aux_targets)
        loss = loss + aux_weight * sum(aux.values())
        parts.update({k: v.item() for k, v in aux.items()})
    return loss, parts


def lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


@torch.no_grad()
def quick_validation(thinker, processor, n: int = 45) -> dict:
    """Full-cache greedy accuracy per family on in-memory validation clips (no file encoding)."""
    from acckv_cli.evaluation.evaluate import answer_matches
    from acckv_cli.media.decode import DecodedMedia
    from acckv_cli.methods import Budget, get_method
    from acckv_cli.model.load import LoadedModel
    from acckv_cli.media.probe import MediaInfo
    from acckv_cli.answer.session import ClipSession

    thinker.eval()
    lm = LoadedModel(thinker, processor, "demo", torch.device("cpu"), torch.float32)
    correct = {f: [] for f in FAMILIES}
    for index in range(n):
        example = make_example("validation", index)
        frames, audio, rate = render_clip(replace(example.spec, fps=FPS))
        frames = as_decoded(frames)
        info = MediaInfo(path=example.key, duration_s=example.spec.duration_s, has_video=True, has_audio=True,
                         native_fps=FPS, width=example.spec.width, height=example.spec.height,
                         n_frames=len(frames), video_codec=None, audio_codec=None, audio_channels=1,
                         audio_rate=rate)
        media = DecodedMedia(info, frames, np.arange(len(frames)) / FPS, FPS, audio, rate)
        answers = ClipSession(lm, media).ask([qa.question for qa in example.questions], get_method("full"),
                                             Budget(1.0), "context", max_new_tokens=4)
        for qa, answer in zip(example.questions, answers):
            correct[qa.family].append(answer_matches(answer.text, qa.answer))
    thinker.train()
    return {f: round(sum(v) / len(v), 3) for f, v in correct.items()}


def train(out: Path, steps: int, batch: int, lr: float, seed: int, validate_every: int,
          max_minutes: float | None = None, init: Path | None = None, first_clip: int = 0,
          aux_weight: float = 0.3) -> dict:
    torch.manual_seed(seed)
    thinker, processor = build_demo_model() if init is None else load_checkpoint(init)
    heads = AuxiliaryHeads(thinker.config.text_config.hidden_size) if aux_weight > 0 else None
    processor.tokenizer.padding_side = "right"
    thinker.train()
    params = list(thinker.named_parameters()) + (list(heads.named_parameters()) if heads else [])
    decay = [p for n, p in params if p.ndim >= 2]
    no_decay = [p for n, p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    history, start, ema = [], time.time(), None
    loader = torch.utils.data.DataLoader(Batches(processor, steps, batch, seed, first_clip), batch_size=None,
                                         num_workers=1, prefetch_factor=4)
    for step, inputs in enumerate(loader):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=min(200, steps // 10))
        loss, parts = loss_on_answers(thinker, inputs, processor.tokenizer, heads, aux_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        ema = float(loss) if ema is None else 0.98 * ema + 0.02 * float(loss)
        if step % 25 == 0:
            log.info("step %d/%d loss %.4f (ema %.4f) %.1f min  %s", step, steps, float(loss), ema,
                     (time.time() - start) / 60, " ".join(f"{k}={v:.3f}" for k, v in parts.items()))
        if validate_every and (step + 1) % validate_every == 0:
            acc = quick_validation(thinker, processor)
            history.append({"step": step + 1, "loss_ema": round(ema, 4), "validation": acc,
                            "minutes": round((time.time() - start) / 60, 1)})
            log.info("validation at step %d: %s", step + 1, acc)
            save(thinker, processor, out, history, steps, batch, lr, seed)
        if max_minutes and time.time() - start > 60 * max_minutes:
            log.info("stopping at step %d: --max-minutes reached", step + 1)
            history.append({"stopped_early_at_step": step + 1})
            break
    save(thinker, processor, out, history, steps, batch, lr, seed)
    return {"history": history, "minutes": (time.time() - start) / 60}


def load_checkpoint(folder: Path):
    """Continue from a saved demo model (weights, tokenizer and processor)."""
    from transformers import Qwen2_5OmniProcessor, Qwen2_5OmniThinkerForConditionalGeneration

    processor = Qwen2_5OmniProcessor.from_pretrained(folder)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder, attn_implementation="sdpa")
    return thinker, processor


def save(thinker, processor, out: Path, history, steps, batch, lr, seed) -> None:
    out.mkdir(parents=True, exist_ok=True)
    thinker.eval()
    thinker.save_pretrained(out)
    processor.tokenizer.padding_side = "left"
    processor.save_pretrained(out)
    processor.tokenizer.padding_side = "right"
    thinker.train()
    card = {"what": "acckv demo model: Qwen2.5-Omni thinker architecture, small config, trained from scratch "
                    "on SynthAVQA (synthetic shapes + instrument tones)",
            "spec": asdict(DEMO_SPEC), "steps": steps, "batch": batch, "lr": lr, "seed": seed,
            "command": f"python -m acckv_cli.demo.train --out {out} --steps {steps} --batch {batch} --lr {lr}",
            "history": history}
    (out / "training.json").write_text(json.dumps(card, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("acckv_cli/assets/demo"))
    parser.add_argument("--steps", type=int, default=4200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="Torch threads for the training process (rendering runs in one more process)")
    parser.add_argument("--validate-every", type=int, default=1050)
    parser.add_argument("--init", type=Path, default=None,
                        help="Continue from this saved model instead of a fresh one (a second training stage)")
    parser.add_argument("--first-clip", type=int, default=0,
                        help="Index of the first training clip (a second stage starts after the clips already seen)")
    parser.add_argument("--aux-weight", type=float, default=0.3,
                        help="Weight of each per-token auxiliary loss (acckv_cli/demo/auxiliary.py); 0 turns them off")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="Stop early (and save) after this long, whatever the step")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    result = train(args.out, args.steps, args.batch, args.lr, args.seed, args.validate_every, args.max_minutes,
                   args.init, args.first_clip, args.aux_weight)
    log.info("done in %.1f min", result["minutes"])


if __name__ == "__main__":
    main()
