"""Tests that need a CUDA device (marker `gpu`; skipped without one; `benchmarks/gpu_check.sh` runs them).

The CUDA path — the framework's attention function on GPU kernels, chunked attention recompute in GPU memory,
bfloat16 — is what these check, on the tiny thinker (built fresh, so the CPU fixtures stay on the CPU):

* float32 on CUDA: the exact contracts hold as on the CPU (eviction = the full cache masked, logits within
  1e-4; a streamed cache that keeps everything = one-shot; merge counts conserve every token);
* bfloat16 on CUDA: the same comparisons within bfloat16's rounding. Both sides compute the same function in
  a different summation order; bfloat16 keeps 8 bits of mantissa (relative step 3.9e-3), so the tolerance is
  3e-2 of the largest logit (a wrong mask or position moves logits by O(1)).
"""

from __future__ import annotations

import pytest
import torch

from conftest import synthetic_media
from acckv_cli.methods import Budget, get_method

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
QUESTION = "What instrument plays?"
BF16_RELATIVE = 3e-2


def _cuda_lm(dtype: torch.dtype, window_s: int = 4):
    from acckv_cli.model.load import LoadedModel
    from acckv_cli.testing.tiny import build_processor, build_tiny_thinker

    thinker, processor = build_tiny_thinker()
    processor = build_processor(processor.tokenizer, feature_chunk_seconds=window_s)
    return LoadedModel(thinker.to("cuda", dtype), processor, f"tiny-cuda-{dtype}", torch.device("cuda"), dtype,
                       is_builtin=True)


@pytest.fixture(scope="module")
def cuda_f32():
    return _cuda_lm(torch.float32)


@pytest.fixture(scope="module")
def cuda_bf16():
    return _cuda_lm(torch.bfloat16)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-12))


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("bfloat16", BF16_RELATIVE)])
def test_device_bench_equivalence_and_memory_on_cuda(dtype, tolerance):
    """The device bench's own checks on CUDA at a tiny size: every method runs with its hooks, eviction equals
    the masked full cache within the dtype's tolerance, peak GPU memory is measured."""
    from acckv_cli.bench.device import DeviceBenchConfig, run_device_bench

    cfg = DeviceBenchConfig(sizes=(512,), shape="tiny", dtype=dtype, device="cuda", budgets=(0.2,), decode_steps=2)
    result = run_device_bench(cfg)
    size = result["sizes"][0]
    assert not [m for m in size["methods"] if "error" in m], size["methods"]
    assert result["equivalence_ok"] and all(e["relative"] <= max(tolerance, e["tolerance"]) for e in size["equivalence"])
    assert size["prefill_none_peak_mb"] > 0 and all(ms > 0 for ms in size["decode_ms_per_token"].values())
    assert size["decode_kv_bytes"]["20%"] < size["decode_kv_bytes"]["full"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_stream_keeping_everything_equals_one_shot_on_cuda(request, dtype):
    """A streamed cache that keeps every entry gives the one-shot first-answer logits (float32: 1e-4 absolute;
    bfloat16: 3e-2 of the largest logit), with the front end in blocks held on the CPU."""
    from acckv_cli.answer.session import ClipSession
    from acckv_cli.answer.stream import StreamSession

    lm = request.getfixturevalue("cuda_f32" if dtype == "float32" else "cuda_bf16")
    media = synthetic_media(seconds=10.3)
    one_shot = ClipSession(lm, media).ask([QUESTION], get_method("full"), Budget(1.0), "context", 2)[0]
    session = StreamSession(lm, media, chunk_seconds=2.0)
    streamed = session.ask([QUESTION], get_method("full"), Budget(1.0), "stream", 2)[0]
    assert session.last_encoder.video.rows.device.type == "cpu"  # encoder outputs wait on the host
    if dtype == "float32":
        assert (streamed.first_logits - one_shot.first_logits).abs().max() < 1e-4
        assert streamed.token_ids == one_shot.token_ids
    else:
        assert _relative(streamed.first_logits, one_shot.first_logits) <= BF16_RELATIVE


def test_front_end_blocks_equal_per_chunk_encoding_on_cuda(cuda_bf16):
    """Vision and audio towers over blocks on CUDA in bfloat16 give each step the per-chunk rows within
    bfloat16 rounding (3e-2 of the rows' largest magnitude)."""
    from acckv_cli.answer.frontend import ChunkEncoder
    from acckv_cli.answer.stream import StreamPrompt, plan_steps

    prompt = StreamPrompt.build_stream(cuda_bf16, synthetic_media(seconds=10.3))
    per_chunk, blocks = ChunkEncoder(cuda_bf16, prompt, None), ChunkEncoder(cuda_bf16, prompt, 1024)
    for start, end in plan_steps(prompt.layout, 2.0):
        a, b = per_chunk.embeds(start, end)["inputs_embeds"], blocks.embeds(start, end)["inputs_embeds"]
        assert a.device.type == "cuda" and _relative(b, a) <= BF16_RELATIVE
    assert blocks.video.blocks == 1 and per_chunk.video.blocks > 1


def test_merge_counts_conserve_every_token_on_cuda(cuda_f32):
    """LOOK-M (avg) streamed over 6 steps on CUDA: layer 0's Σ count·value equals the full prefill's value sum."""
    from acckv_cli.answer.session import ClipSession
    from acckv_cli.answer.stream import StreamSession

    media = synthetic_media(seconds=10.3)
    session = StreamSession(cuda_f32, media, chunk_seconds=2.0)
    cache = session.media_cache(get_method("lookm", merge="avg"), Budget(40))
    full = ClipSession(cuda_f32, media).media_cache(get_method("full"), Budget(1.0)).cache.layers[0].values
    counts = session.last_stream.run.counts[0]
    weighted = (counts[:, :, None] * cache.cache.layers[0].values[0]).sum(1)
    assert counts.device.type == "cuda" and torch.allclose(weighted, full[0].sum(1), rtol=1e-4, atol=1e-3)
