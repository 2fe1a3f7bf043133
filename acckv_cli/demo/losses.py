"""The demo model's training loss: answers only, each question turn isolated from the others.

Several questions share one encoding of a clip in one forward pass; `isolate_turns` gives every turn a
block of a 4-D attention mask and positions that restart right after the media, exactly as when the
question is asked alone at test time. Auxiliary per-token losses (`auxiliary.py`) are added when heads
are given.
"""

from __future__ import annotations

import torch

from acckv_cli.demo.auxiliary import AuxiliaryHeads, encoder_outputs
from acckv_cli.demo.sequence import SequenceHeads
from acckv_cli.model.layout import audio_lengths


def isolate_turns(thinker, inputs, tokenizer) -> dict:
    """Make every question turn see only the media prefix and itself, at the positions it has at test time.

    Several questions share one encoding of the clip, but a later turn must not read an earlier answer
    ("What colour is the square?" → purple, then "What shape is purple?"). Each turn gets a block of a
    4-D causal mask and positions that restart right after the media block, as a single question would.
    """
    ids, pad = inputs["input_ids"], inputs["attention_mask"].bool()
    feature_mask = inputs["feature_attention_mask"]
    # one clip may arrive as several audio windows (model/soundtrack.py): they are one audio item for positions
    lengths = audio_lengths(feature_mask) if ids.shape[0] == 1 else feature_mask.sum(-1)
    pos3, _ = thinker.get_rope_index(ids, None, inputs["video_grid_thw"], inputs["attention_mask"], True,
                                     lengths, inputs["video_second_per_grid"])
    pos4 = torch.cat([(inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)[None], pos3]).clone()
    turn = turn_map(ids, pad, tokenizer)
    for b in range(ids.shape[0]):
        for k in range(1, int(turn[b].max()) + 1):
            at = (turn[b] == k).nonzero().squeeze(1)
            prefix_end = int((turn[b] > 0).nonzero().min())
            pos4[:, b, at] = pos4[:, b, prefix_end:prefix_end + 1] + torch.arange(at.numel())
    inputs = dict(inputs)
    inputs["position_ids"] = pos4
    if ids.shape[0] == 1 and int(turn.max()) <= 1:
        return inputs  # one turn: the plain causal mask already isolates it (and keeps sdpa's fast path)
    inputs["attention_mask"] = turn_mask(turn, pad)[:, None]
    return inputs


def turn_map(ids: torch.Tensor, pad: torch.Tensor, tokenizer) -> torch.Tensor:
    """[B, L] long: 0 for the shared prefix (system prompt and media), k for the k-th question turn."""
    B, L = ids.shape
    turn = torch.zeros(B, L, dtype=torch.long)
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
    return turn


def turn_mask(turn: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """[B, L, L] bool: causal, each turn sees the shared prefix and itself, never another turn or padding."""
    L = turn.shape[1]
    same = (turn[:, :, None] == turn[:, None, :]) | (turn[:, None, :] == 0)
    mask = same & torch.ones(L, L, dtype=torch.bool).tril() & pad[:, None, :]
    return mask | torch.eye(L, dtype=torch.bool)  # padded queries attend to themselves (no NaN rows)


AUX_LAYER = 2  # decoder layer whose audio tokens must already "see" the picture
SEQUENCE_LAYER = 4  # decoder layer that must know what came before (sequence.py): above AUX_LAYER
LENS_LAYER = 4  # decoder layer that must name the answer where a letter is chosen (sequence.answer_lens_targets)
LETTER_LAYER = 2  # decoder layer whose option words must name their own letter (sequence.option_letter_targets)


def loss_on_answers(thinker, inputs: dict, tokenizer=None, heads: AuxiliaryHeads | None = None,
                    aux_weight: float = 0.0, sequence_heads: SequenceHeads | None = None,
                    sequence_weight: float = 0.0, lens_weight: float = 0.0,
                    letter_weight: float = 0.0, stop_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on answer positions only (logits are computed only there), plus the weighted
    auxiliary per-token losses of whichever heads are given, plus (`stop_weight`) `stop_loss`.
    Returns (loss, its parts as floats)."""
    labels = inputs.pop("labels")
    aux_targets = inputs.pop("aux_targets", None)
    sequence_targets = inputs.pop("sequence_targets", None)
    lens_targets = inputs.pop("lens_targets", None)
    lens = lens_weight > 0 and lens_targets is not None and len(lens_targets[0]) > 0
    letter_targets = inputs.pop("letter_targets", None)
    letter = letter_weight > 0 and letter_targets is not None and len(letter_targets[0]) > 0
    stop = None
    if stop_weight > 0 and tokenizer is not None and labels.shape[1] <= STOP_MAX_TOKENS:
        stop = stop_loss(thinker, inputs, labels, tokenizer)
    if tokenizer is not None:
        inputs = isolate_turns(thinker, inputs, tokenizer)
    probes = heads is not None or sequence_heads is not None or lens or letter
    with encoder_outputs(thinker) as encoded:
        out = thinker.model(**inputs, use_audio_in_video=True, use_cache=False, output_hidden_states=probes)
    hidden = out.last_hidden_state[:, :-1]
    target = labels[:, 1:]
    where = target != -100
    logits = thinker.lm_head(hidden[where])
    loss = torch.nn.functional.cross_entropy(logits.float(), target[where])
    parts = {"answer": loss.item()}
    is_audio = inputs["input_ids"] == thinker.config.audio_token_id
    if heads is not None and aux_targets is not None:
        aux = heads.losses(encoded["video"], encoded["audio"], out.hidden_states[AUX_LAYER][is_audio], aux_targets)
        loss = loss + aux_weight * sum(aux.values())
        parts.update({k: v.item() for k, v in aux.items()})
    if sequence_heads is not None and sequence_targets is not None:
        upper = out.hidden_states[min(SEQUENCE_LAYER, len(out.hidden_states) - 1)]  # tiny test models: the top
        options = upper.flatten(0, 1)[sequence_targets["option_at"]]
        seq = sequence_heads.losses(upper[is_audio], options, sequence_targets)
        loss = loss + sequence_weight * sum(seq.values())
        parts.update({k: v.item() for k, v in seq.items()})
    if lens:
        lens_loss = read_out_loss(thinker, out.hidden_states, LENS_LAYER, *lens_targets)
        loss = loss + lens_weight * lens_loss
        parts["answer_lens"] = lens_loss.item()
    if letter:
        letter_loss = read_out_loss(thinker, out.hidden_states, LETTER_LAYER, *letter_targets)
        loss = loss + letter_weight * letter_loss
        parts["option_letter"] = letter_loss.item()
    if stop is not None:
        loss = loss + stop_weight * stop
        parts["stop"] = stop.item()
    return loss, parts


STOP_MAX_TOKENS = 4096  # long clips (10k tokens) skip it: a 4-D mask there costs eager attention and 100 MB
STOP_KEEP = (0.02, 0.1)  # share of media keys a turn still sees in `stop_loss`, drawn uniformly per clip: at 3-30 % the
# closing token was already certain (loss 0.000 over 70 steps); at 5 % 3 % of training turns still run on (CE > 0.7)


def stop_loss(thinker, inputs: dict, labels: torch.Tensor, tokenizer) -> torch.Tensor:
    """Cross-entropy of each answer's closing <|im_end|> when the question turns see only a random share of
    the media keys (the shared prefix itself still sees all of it, as a prompt does before compression).

    Why: under a compressed cache the one-word answer must still end; v2e said "flute flute". Only the
    closing token is scored, so the answer word's own sensitivity to eviction — what the yardstick measures —
    is not trained away. The eviction is a pure function of the clip's tokens (resumes stay exact).
    """
    ids, pad = inputs["input_ids"], inputs["attention_mask"].bool()
    isolated = isolate_turns(thinker, inputs, tokenizer)
    turn = turn_map(ids, pad, tokenizer)
    config = thinker.config
    media = (ids == config.audio_token_id) | (ids == config.video_token_id)
    rng = torch.Generator().manual_seed(int(ids.sum()) * 31 + ids.shape[1])
    keep = STOP_KEEP[0] + (STOP_KEEP[1] - STOP_KEEP[0]) * float(torch.rand((), generator=rng))
    evicted = media & (torch.rand(ids.shape, generator=rng) >= keep)
    mask = turn_mask(turn, pad) & ~((turn > 0)[:, :, None] & evicted[:, None, :])
    isolated["attention_mask"] = mask[:, None]
    hidden = thinker.model(**isolated, use_audio_in_video=True, use_cache=False).last_hidden_state[:, :-1]
    target = labels[:, 1:]
    ends = target == tokenizer.convert_tokens_to_ids("<|im_end|>")
    return torch.nn.functional.cross_entropy(thinker.lm_head(hidden[ends]).float(), target[ends])


def read_out_loss(thinker, hidden_states: tuple, layer: int, positions: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of `tokens` read from decoder layer `layer` at `positions` through the final norm and `lm_head`
    (a logit lens turned into a target: the model's own read-out, no probe)."""
    states = hidden_states[min(layer, len(hidden_states) - 1)].flatten(0, 1)[positions]
    logits = thinker.lm_head(thinker.model.language_model.norm(states))
    return torch.nn.functional.cross_entropy(logits.float(), tokens)
