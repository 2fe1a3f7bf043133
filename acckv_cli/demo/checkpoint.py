"""Building, deepening, saving and resuming the demo model.

Demo model v2 starts from v1 (4 decoder layers) deepened to 6: the new layers are copies of their
neighbours with their output projections (`o_proj`, `down_proj`) set to zero, so each new block adds
nothing to the residual stream at first and the deepened model computes exactly what v1 computed; training
then gives the new layers their own job. This keeps what v1 learnt about colours, shapes and instruments
(40+ minutes of CPU) instead of learning it again.

A training run saves a checkpoint folder every few steps — the thinker (safetensors), the processor, and
`trainer.pt` with the step, optimizer, auxiliary heads and history — so a run can span several sittings.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

CHECKPOINT = "checkpoint"


def load_thinker(folder: Path):
    """(thinker, processor) of a saved demo model."""
    from transformers import Qwen2_5OmniProcessor, Qwen2_5OmniThinkerForConditionalGeneration

    processor = Qwen2_5OmniProcessor.from_pretrained(folder)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder, attn_implementation="sdpa")
    return thinker, processor


def insertion_plan(old_layers: int, new_layers: int) -> list[int | None]:
    """For each new layer, the old layer it continues, or None for an inserted identity layer; inserted
    layers are spread evenly (4 → 6: [0, 1, None, 2, 3, None])."""
    extra = new_layers - old_layers
    if extra < 0:
        raise ValueError(f"cannot deepen {old_layers} layers to {new_layers}")
    every = old_layers / extra if extra else 0
    plan, inserted = [], 0
    for old in range(old_layers):
        plan.append(old)
        if extra and inserted < extra and (old + 1) >= round(every * (inserted + 1)):
            plan.append(None)
            inserted += 1
    return plan + [None] * (extra - inserted)


ZEROED = ("self_attn.o_proj.weight", "self_attn.o_proj.bias", "mlp.down_proj.weight")  # a block's outputs


def decoder_prefix(state: dict) -> str:
    """The state-dict prefix of the text decoder's layers ("model.language_model.layers." in transformers 5)."""
    key = next(k for k in state if k.endswith("layers.0.mlp.gate_proj.weight") and "audio" not in k
               and "visual" not in k)
    return key[: key.index("layers.0.") + len("layers.")]


def deepen(thinker, new_layers: int):
    """A copy of `thinker` with `new_layers` decoder layers computing the same function (see the module)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    config = thinker.config
    old_layers = config.text_config.num_hidden_layers
    plan = insertion_plan(old_layers, new_layers)
    config = type(config).from_dict(config.to_dict())
    config.text_config.num_hidden_layers = new_layers
    if getattr(config.text_config, "layer_types", None):
        config.text_config.layer_types = [config.text_config.layer_types[0]] * new_layers
    deeper = Qwen2_5OmniThinkerForConditionalGeneration(config)
    old_state = thinker.state_dict()
    prefix = decoder_prefix(old_state)
    new_state = {k: v.clone() for k, v in old_state.items() if not k.startswith(prefix)}
    for new, old in enumerate(plan):
        source = old if old is not None else plan[new - 1] if new else 0
        for key, value in old_state.items():
            if key.startswith(f"{prefix}{source}."):
                name = key[len(f"{prefix}{source}."):]
                value = value.clone()
                if old is None and name in ZEROED:
                    value.zero_()
                new_state[f"{prefix}{new}.{name}"] = value
    deeper.load_state_dict(new_state, strict=True)
    return deeper.to(next(thinker.parameters()).dtype)


def save_model(thinker, processor, out: Path, card: dict) -> None:
    """The thinker and processor as a loadable model folder, with `training.json`."""
    out.mkdir(parents=True, exist_ok=True)
    was_training = thinker.training
    thinker.eval()
    thinker.save_pretrained(out)
    side = processor.tokenizer.padding_side
    processor.tokenizer.padding_side = "left"
    processor.save_pretrained(out)
    processor.tokenizer.padding_side = side
    thinker.train(was_training)
    (out / "training.json").write_text(json.dumps(card, indent=1))


def save_checkpoint(out: Path, thinker, processor, opt, heads, step: int, card: dict) -> None:
    """Everything a resumed run needs, written beside the model so a kill leaves the last complete one."""
    folder = out / CHECKPOINT
    tmp = out / (CHECKPOINT + ".tmp")
    save_model(thinker, processor, tmp, card)
    torch.save({"step": step, "optimizer": opt.state_dict(),
                "heads": heads.state_dict() if heads is not None else None}, tmp / "trainer.pt")
    if folder.exists():
        old = out / (CHECKPOINT + ".old")
        folder.rename(old)
        tmp.rename(folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(folder)


def load_checkpoint(out: Path) -> tuple[object, object, dict, dict]:
    """(thinker, processor, trainer state, card) of the last checkpoint under `out`."""
    folder = out / CHECKPOINT
    thinker, processor = load_thinker(folder)
    state = torch.load(folder / "trainer.pt", weights_only=False)  # our own file, written by save_checkpoint
    card = json.loads((folder / "training.json").read_text())
    return thinker, processor, state, card


def spec_card(spec) -> dict:
    return asdict(spec)
