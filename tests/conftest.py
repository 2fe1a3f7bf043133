"""Shared fixtures: tiny random Qwen2.5-Omni and Qwen3-Omni thinkers and processors, small prompts built offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch

from acckv_cli.model.layout import layout_for_inputs
from acckv_cli.media.decode import DecodedMedia
from acckv_cli.model.load import LoadedModel, build_inputs
from acckv_cli.media.probe import MediaInfo
from acckv_cli.testing.tiny import build_tiny_thinker
from acckv_cli.testing.qwen3 import build_tiny_qwen3_thinker

torch.set_num_threads(2)

# Tests that hold for every supported model family are parametrized over these (see `family_fixtures`).
FAMILIES = ("qwen2.5", "qwen3")

# What a method cannot run without, for the tests parametrized over METHODS: the oracle keeps a question's
# evidence spans, here the second second of the clips (the 4-s synthetic prompts and the 10-s samples).
METHOD_PARAMS: dict[str, dict] = {"oracle": {"evidence": ((1.0, 2.0),)}}


def build_method(name: str, **params):
    """`get_method(name)` with the parameters the method needs (METHOD_PARAMS) under `params`."""
    from acckv_cli.methods import get_method
    return get_method(name, **{**METHOD_PARAMS.get(name, {}), **params})


def method_spec(name: str) -> str:
    """The command-line spec of `name` with the parameters it needs (`oracle:evidence=1.0-2.0`)."""
    if name != "oracle":
        return name
    return "oracle:evidence=" + "+".join(f"{s}-{e}" for s, e in METHOD_PARAMS["oracle"]["evidence"])


@pytest.fixture(scope="session")
def tiny():
    """(thinker, processor) of the tiny random model, float32 on CPU, built once per session."""
    return build_tiny_thinker()


@pytest.fixture(scope="session")
def tiny_lm(tiny):
    thinker, processor = tiny
    return LoadedModel(thinker, processor, "tiny", torch.device("cpu"), torch.float32, is_builtin=True)


@pytest.fixture(scope="session")
def tiny_lm_w4(tiny):
    """The tiny model with a 4-s audio window (instead of 30 s), so soundtracks longer than the window stay
    short and fast in tests."""
    from acckv_cli.testing.tiny import build_processor

    thinker, processor = tiny
    return LoadedModel(thinker, build_processor(processor.tokenizer, feature_chunk_seconds=4), "tiny-w4",
                       torch.device("cpu"), torch.float32, is_builtin=True)


def synthetic_media(seconds: float = 4.0, fps: float = 2.0, video: bool = True, audio: bool = True,
                    size: tuple[int, int] = (112, 140), seed: int = 0) -> DecodedMedia:
    """Random frames and noise as if decoded from a clip (no file needed)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    frames = rng.integers(0, 255, (n, *size, 3), dtype=np.uint8) if video else None
    wav = (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32) if audio else None
    info = MediaInfo(path="synthetic", duration_s=seconds, has_video=video, has_audio=audio,
                     native_fps=fps if video else None, width=size[1] if video else None,
                     height=size[0] if video else None, n_frames=n if video else None, video_codec=None,
                     audio_codec=None, audio_channels=1 if audio else None, audio_rate=16000 if audio else None)
    return DecodedMedia(info=info, frames=frames, frame_times=np.arange(n) / fps if video else None,
                        sample_fps=fps if video else None, audio=wav, audio_rate=16000, notices=[],
                        decode_seconds=0.0)


class Prompt:
    """Processor inputs, the model flag and the token layout of one synthetic clip + question."""

    def __init__(self, lm, media, question="What instrument plays?"):
        self.inputs, self.use_audio_in_video = build_inputs(lm, media, question)
        self.layout = layout_for_inputs(lm.thinker, lm.processor, self.inputs, self.use_audio_in_video)
        self.layout.extras["question"] = question

    def generate(self, thinker, **kwargs):
        kwargs.setdefault("max_new_tokens", 4)
        return thinker.generate(**self.inputs, use_audio_in_video=self.use_audio_in_video, do_sample=False,
                                return_dict_in_generate=True, output_logits=True, **kwargs)


@pytest.fixture(scope="session")
def av_prompt(tiny_lm):
    return Prompt(tiny_lm, synthetic_media())


@pytest.fixture(scope="session")
def video_prompt(tiny_lm):
    return Prompt(tiny_lm, synthetic_media(audio=False), "What colour is the square?")


@pytest.fixture(scope="session")
def audio_prompt(tiny_lm):
    return Prompt(tiny_lm, synthetic_media(video=False))


@pytest.fixture(scope="session")
def tiny_q3():
    """(thinker, processor) of the tiny random Qwen3-Omni thinker (MoE, q/k norms, deepstack), built once."""
    return build_tiny_qwen3_thinker()


@pytest.fixture(scope="session")
def q3_lm(tiny_q3):
    thinker, processor = tiny_q3
    return LoadedModel(thinker, processor, "tiny-qwen3", torch.device("cpu"), torch.float32, is_builtin=True)


@pytest.fixture(scope="session")
def q3_av_prompt(q3_lm):
    return Prompt(q3_lm, synthetic_media())


def family_fixtures(request, family: str):
    """(LoadedModel, audio+video Prompt) of the tiny model of `family`, one of FAMILIES."""
    lm, prompt = {"qwen2.5": ("tiny_lm", "av_prompt"), "qwen3": ("q3_lm", "q3_av_prompt")}[family]
    return request.getfixturevalue(lm), request.getfixturevalue(prompt)


class Calls:
    """What ran, counted by hooks (not by the fields the code writes about itself): `audio` and `video`
    encoder forwards, `decode` calls of the media decoder, and the token length of every text-decoder
    forward (`prefill`: those with at least `long` tokens, i.e. that carry media)."""

    def __init__(self, long: int):
        self.audio = self.video = self.decode = 0
        self.lengths: list[int] = []
        self.long = long

    @property
    def prefill(self) -> list[int]:
        return [n for n in self.lengths if n >= self.long]


@pytest.fixture
def count_calls(monkeypatch):
    """`with count_calls(thinker, long=100) as calls:` — hooks on the thinker's audio tower, vision tower and
    text decoder, and a spy on `acckv_cli.media.decode.decode`; removed on exit."""
    import contextlib

    from acckv_cli.media import decode as media_mod

    @contextlib.contextmanager
    def counting(thinker, long: int = 100):
        calls = Calls(long)
        real = media_mod.decode

        def decode(*args, **kwargs):
            calls.decode += 1
            return real(*args, **kwargs)

        def length(module, args, kwargs, output):  # after the forward: embed_prompt's capture stops before it
            embeds = kwargs.get("inputs_embeds")
            ids = kwargs.get("input_ids") if embeds is None else None
            tensor = embeds if embeds is not None else ids if ids is not None else args[0]
            calls.lengths.append(int(tensor.shape[1]))

        towers = thinker.model
        handles = [towers.audio_tower.register_forward_hook(lambda *_: setattr(calls, "audio", calls.audio + 1)),
                   towers.visual.register_forward_hook(lambda *_: setattr(calls, "video", calls.video + 1)),
                   thinker.get_decoder().register_forward_hook(length, with_kwargs=True)]
        monkeypatch.setattr(media_mod, "decode", decode)
        try:
            yield calls
        finally:
            for handle in handles:
                handle.remove()
            monkeypatch.setattr(media_mod, "decode", real)

    return counting
