"""Token layout: the modality, time and 3-D position of every prompt token.

Compression methods and reports consume a `TokenLayout`; it is derived from the model's own mRoPE
positions (`get_rope_index`), never from a re-implementation of Qwen's interleaving, so it stays right for
video+audio, video-only and audio-only prompts, and for both families: Qwen2.5-Omni (2-s chunks, 25
integer positions per second) and Qwen3-Omni (per-token merge, 13 float positions per second). Token ids
and the time scale come from the family (`acckv_cli.model.families`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from acckv_cli.lazy import torch

from acckv_cli.model.families import family_for_config


class Modality(enum.IntEnum):
    """What a prompt token is. Text-like kinds (everything but VIDEO and AUDIO) are never evicted."""

    SYSTEM = 0    # content of the system turn
    TEXT = 1      # role names, newlines, generated tokens
    QUESTION = 2  # text the user typed in the user turn
    DELIM = 3     # <|im_start|>, <|im_end|>, vision/audio bos/eos
    VIDEO = 4
    AUDIO = 5

    @property
    def label(self) -> str:
        return self.name.lower()


MEDIA = (Modality.VIDEO, Modality.AUDIO)


@dataclass
class SpecialIds:
    """Token ids the layout needs, read from the model config and tokenizer at run time."""

    video: int
    audio: int
    im_start: int
    im_end: int
    delimiters: tuple[int, ...]

    @classmethod
    def from_model(cls, config, tokenizer) -> "SpecialIds":
        """Ids of the model's family: config attributes where the family declares them, else token strings
        (Qwen2.5-Omni says `video_token_index`, Qwen3-Omni `video_token_id`)."""
        ids = family_for_config(config).special_token_ids(config, tokenizer)
        order = ("audio_start", "audio_end", "vision_start", "vision_end", "im_start", "im_end")
        return cls(video=ids["video"], audio=ids["audio"], im_start=ids["im_start"], im_end=ids["im_end"],
                   delimiters=tuple(ids[role] for role in order if role in ids))


@dataclass
class TokenLayout:
    """Per-token facts for one prompt of length L (batch size 1).

    modality:   int8 [L], values of `Modality`
    time_s:     float32 [L], seconds from the start of the clip for media tokens, NaN otherwise
    frame_pair: int32 [L], temporal grid index of a video token (sampled frames 2g and 2g+1), -1 otherwise
    row, col:   int32 [L], spatial cell of a video token on the merged grid, -1 otherwise
    positions:  [3, L], the model's mRoPE (t, h, w) positions, in the model's own dtype: int64 for
                Qwen2.5-Omni, float32 for Qwen3-Omni, whose temporal positions are fractional (13 per second
                × 2/fps per frame pair: 8.67 at 3 fps). Never cast them: times come from these values.
    seconds_per_chunk: Qwen2.5-Omni's interleave chunk; None for Qwen3-Omni (interleaved per token)
    """

    modality: torch.Tensor
    time_s: torch.Tensor
    frame_pair: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    positions: torch.Tensor
    seconds_per_chunk: float | None = 2.0
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.modality.numel())

    def mask(self, *kinds: Modality) -> torch.Tensor:
        """Boolean [L] mask of the tokens of the given kinds."""
        out = torch.zeros(len(self), dtype=torch.bool)
        for kind in kinds:
            out |= self.modality == int(kind)
        return out

    @property
    def media_mask(self) -> torch.Tensor:
        return self.mask(*MEDIA)

    @property
    def protected_mask(self) -> torch.Tensor:
        """Text, system, question and delimiter tokens: always kept by every method."""
        return ~self.media_mask

    def post_media_text_mask(self) -> torch.Tensor:
        """Text-like tokens after the last media token: the only text queries that can see the media."""
        media = self.media_mask.nonzero()
        last = int(media.max()) if media.numel() else -1
        after = torch.arange(len(self)) > last
        return after & self.protected_mask

    def prefix(self, n: int) -> "TokenLayout":
        """The layout of the first `n` tokens (what a protocol compresses when the rest comes later)."""
        return TokenLayout(self.modality[:n].clone(), self.time_s[:n].clone(), self.frame_pair[:n].clone(),
                           self.row[:n].clone(), self.col[:n].clone(), self.positions[:, :n].clone(),
                           self.seconds_per_chunk, dict(self.extras))

    def select(self, index: torch.Tensor) -> "TokenLayout":
        """The layout of the tokens at `index` [n] (a compressed cache's entries, in cache order)."""
        index = index.cpu()
        return TokenLayout(self.modality[index], self.time_s[index], self.frame_pair[index], self.row[index],
                           self.col[index], self.positions[:, index], self.seconds_per_chunk, dict(self.extras))

    def counts(self) -> dict[str, int]:
        """Number of tokens of each modality, by lower-case name."""
        return {kind.label: int((self.modality == int(kind)).sum()) for kind in Modality}

    @property
    def duration_s(self) -> float:
        times = self.time_s[~torch.isnan(self.time_s)]
        return float(times.max()) if times.numel() else 0.0

    def second_bins(self) -> torch.Tensor:
        """int64 [L]: whole second of each media token, -1 for text-like tokens."""
        secs = torch.full((len(self),), -1, dtype=torch.long)
        media = ~torch.isnan(self.time_s)
        secs[media] = self.time_s[media].floor().long()
        return secs


def label_tokens(input_ids: torch.Tensor, ids: SpecialIds, tokenizer) -> torch.Tensor:
    """Modality of every token of a 1-D `input_ids`, from token ids and the chat turn structure."""
    ids_list = input_ids.tolist()
    labels = torch.full((len(ids_list),), int(Modality.TEXT), dtype=torch.int8)
    starts = [i for i, t in enumerate(ids_list) if t == ids.im_start]
    for s in starts:
        end = next((j for j in range(s + 1, len(ids_list)) if ids_list[j] == ids.im_end), len(ids_list))
        header_end = _role_header_end(ids_list, s, end, tokenizer)
        role = tokenizer.decode(ids_list[s + 1:header_end]).strip()
        content = {"system": Modality.SYSTEM, "user": Modality.QUESTION}.get(role, Modality.TEXT)
        labels[header_end:end] = int(content)
    tensor_ids = torch.as_tensor(ids_list)
    labels[torch.isin(tensor_ids, torch.tensor(ids.delimiters))] = int(Modality.DELIM)
    labels[tensor_ids == ids.video] = int(Modality.VIDEO)
    labels[tensor_ids == ids.audio] = int(Modality.AUDIO)
    return labels


def _role_header_end(ids_list: list[int], start: int, end: int, tokenizer) -> int:
    """Index just after the role name and its newline that follow `<|im_start|>`."""
    for j in range(start + 1, min(end, start + 8)):
        if "\n" in tokenizer.decode([ids_list[j]]):
            return j + 1
    return start + 2


def build_layout(positions: torch.Tensor, labels: torch.Tensor, position_id_per_seconds: float,
                 second_per_grid: float | None, seconds_per_chunk: float | None = 2.0) -> TokenLayout:
    """Derive times and video cells from the model's mRoPE positions `[3, L]` and token labels `[L]`.

    Temporal positions of media tokens are time × `position_id_per_seconds` relative to the origin of
    their media block (docs/qwen-omni-plumbing.md), so each contiguous run of media tokens is converted on its own.
    Positions may be int64 (Qwen2.5-Omni) or float (Qwen3-Omni); times are computed in float either way.
    """
    L = labels.numel()
    time_s = torch.full((L,), float("nan"))
    frame_pair = torch.full((L,), -1, dtype=torch.int32)
    row = torch.full((L,), -1, dtype=torch.int32)
    col = torch.full((L,), -1, dtype=torch.int32)
    media = ((labels == int(Modality.VIDEO)) | (labels == int(Modality.AUDIO))).nonzero().squeeze(1)
    for run in _contiguous_runs(media):
        origin = positions[0, run].min()
        time_s[run] = (positions[0, run] - origin).float() / position_id_per_seconds
        video = run[labels[run] == int(Modality.VIDEO)]
        if video.numel():
            row[video] = (positions[1, video] - origin).int()
            col[video] = (positions[2, video] - origin).int()
            if second_per_grid:
                frame_pair[video] = torch.round(time_s[video] / second_per_grid).int()
    return TokenLayout(modality=labels.clone(), time_s=time_s, frame_pair=frame_pair, row=row, col=col,
                       positions=positions.clone(), seconds_per_chunk=seconds_per_chunk)


def _contiguous_runs(index: torch.Tensor) -> list[torch.Tensor]:
    if index.numel() == 0:
        return []
    breaks = ((index[1:] - index[:-1]) != 1).nonzero().squeeze(1).add(1).tolist()
    return list(torch.tensor_split(index, breaks))


def audio_lengths(feature_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Mel frames of the prompt's one soundtrack, [1]: the sum over all rows of the feature mask.

    A prompt holds one clip; a soundtrack longer than the model's audio window arrives as several feature
    rows (one per window, `acckv_cli.model.soundtrack`) that are one audio item for the positions.
    """
    if feature_mask is None:
        return None
    return feature_mask.sum().reshape(1)


def layout_for_inputs(thinker, processor, inputs, use_audio_in_video: bool) -> TokenLayout:
    """The layout of a processor output (batch size 1), using the thinker's own `get_rope_index`."""
    input_ids = inputs["input_ids"]
    if input_ids.shape[0] != 1:
        raise ValueError("token layout is defined for batch size 1")
    feature_mask = inputs.get("feature_attention_mask")
    spg = inputs.get("video_second_per_grid")
    positions, _ = thinker.get_rope_index(
        input_ids, None, inputs.get("video_grid_thw"), inputs.get("attention_mask"), use_audio_in_video,
        audio_lengths(feature_mask), spg)
    config = thinker.config
    family = family_for_config(config)
    labels = label_tokens(input_ids[0].cpu(), SpecialIds.from_model(config, processor.tokenizer),
                          processor.tokenizer)
    return build_layout(positions[:, 0].cpu(), labels, family.position_id_per_seconds(config),
                        float(spg[0]) if spg is not None else None, family.seconds_per_chunk(config))
