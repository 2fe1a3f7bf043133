"""The one generation routine: encode once, prefill prompt segments against a cache, decode greedily.

Every forward passes explicit positions — the whole prompt's 4-row `position_ids` (text row + 3-D mRoPE
t/h/w) sliced to the segment, then one past the prompt's last position per generated token — so nothing
ever reads the cache length to place a token (after compression it is not the prompt length; pitfall 5),
and the model's `rope_deltas` state is never used. Only the last position's logits are computed.

Shapes: input_ids [1, q]; positions [4, 1, q]; logits [V] fp32.
"""

from __future__ import annotations

import re

import torch


class _Embedded(Exception):
    """Stops the multimodal forward once the decoder inputs exist (raised by a pre-hook)."""


@torch.inference_mode()
def embed_prompt(thinker, inputs: dict, positions: torch.Tensor, use_audio_in_video: bool) -> dict:
    """Run the audio and vision encoders once; return the text decoder's inputs for the prompt.

    Uses the thinker's own forward up to its text decoder (where placeholder tokens are replaced by
    encoder outputs), captured by a pre-hook, so the merge is transformers' own code. The result
    (`inputs_embeds` [1, P, d] plus any extra decoder inputs a model family passes) is reused for every
    prefill of this prompt (one per compression setting) without rerunning the encoders.
    """
    decoder = thinker.get_decoder()
    captured: dict = {}

    def grab(module, args, kwargs):
        captured.update(kwargs)
        raise _Embedded

    handle = decoder.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        thinker.model(**inputs, position_ids=positions, use_audio_in_video=use_audio_in_video, use_cache=False)
    except _Embedded:
        pass
    finally:
        handle.remove()
    dropped = ("attention_mask", "position_ids", "cache", "past_key_values", "use_cache", "return_dict")
    return {k: v for k, v in captured.items() if k not in dropped}


@torch.inference_mode()
def forward_segment(thinker, cache, positions: torch.Tensor, input_ids: torch.Tensor | None = None,
                    embedded: dict | None = None, logits: bool = True) -> torch.Tensor | None:
    """Run prompt tokens (ids, or `embed_prompt`'s output) through the decoder against `cache`.

    Returns the fp32 next-token logits [V] of the segment's last position, or None when `logits` is False.
    """
    inputs = dict(embedded) if embedded is not None else {"input_ids": input_ids}
    out = thinker.get_decoder()(**inputs, position_ids=positions, cache=cache, use_cache=True)
    if not logits:
        return None
    return thinker.lm_head(out.last_hidden_state[:, -1:])[0, -1].float()


@torch.inference_mode()
def greedy_decode(thinker, cache, first_logits: torch.Tensor, next_positions: torch.Tensor,
                  max_new_tokens: int, eos_ids: set[int]) -> list[int]:
    """Greedy tokens after a prompt whose last logits are `first_logits`; stops after an end token."""
    token = int(first_logits.argmax())
    out = [token]
    device = next_positions.device
    for step in range(1, max_new_tokens):
        if token in eos_ids:
            break
        ids = torch.tensor([[token]], device=device)
        token = int(forward_segment(thinker, cache, next_positions + (step - 1), ids).argmax())
        out.append(token)
    return out


def eos_token_ids(thinker, tokenizer) -> set[int]:
    """The ids that end an answer: the generation config's end tokens and `<|im_end|>`."""
    ids = thinker.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, (list, tuple)) else ([] if ids is None else [ids]))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end >= 0:
        ids.add(im_end)
    return ids


def split_words(text: str, words: frozenset[str]) -> str:
    """Insert the spaces a model without them left out between known words ("greenblue" → "green blue").

    Only a run of letters that is entirely a concatenation of `words` is split (shortest number of
    words); anything else is left as it is.
    """
    if not words:
        return text

    def split(match: re.Match) -> str:
        run = match.group(0)
        lower = run.lower()
        best: list[int | None] = [0] + [None] * len(lower)   # fewest words covering lower[:i]
        back = [0] * (len(lower) + 1)
        for i in range(1, len(lower) + 1):
            for j in range(i):
                if best[j] is not None and lower[j:i] in words and (best[i] is None or best[j] + 1 < best[i]):
                    best[i], back[i] = best[j] + 1, j
        if best[-1] is None or best[-1] < 2:
            return run
        cuts, i = [], len(lower)
        while i > 0:
            cuts.append(back[i])
            i = back[i]
        bounds = sorted(cuts) + [len(run)]
        return " ".join(run[a:b] for a, b in zip(bounds[:-1], bounds[1:]))

    return re.sub(r"[A-Za-z]+", split, text)
