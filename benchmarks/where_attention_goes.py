"""Where do attention-based scores put the media budget on SynthAVQA, compared with where the answer is?

For validation clips of SynthAVQA (exact ground truth), every media token is classed as
  video-object   a video token whose 28-px cell overlaps a shape on screen in its frame pair
  video-empty    a video token showing only background
  audio-sound    an audio token while an instrument sounds
  audio-silent   an audio token in a gap (no instrument)
and, per decoder layer, each score's *enrichment* is printed: the share of the score mass a class receives
divided by the class's share of the tokens (1 = no preference; random eviction is 1 for every class; a
useful importance signal should be > 1 on objects and sounds). Scores:
  ar_text   AccKV's A-R over the text rows after the media (context protocol: the closing delimiters;
            query-aware: + the question), visible_count
  ar_all    A-R over all prompt rows
  h2o       raw column sums over all rows (H2O / LOOK-M)
  snapkv    SnapKV's pooled window attention (last 64 rows)

    python benchmarks/where_attention_goes.py --clips 10
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from acckv_cli.evaluation.evaluate import synthavqa_items
from acckv_cli.model.layout import Modality
from acckv_cli.media.decode import decode
from acckv_cli.methods import Budget, LayerResult, get_method
from acckv_cli.methods.acckv import redistributed_scores
from acckv_cli.methods.full import Full
from acckv_cli.model.load import load_model
from acckv_cli.answer.session import ClipSession
from acckv_cli.synth.avqa import make_example

CLASSES = ("video-object", "video-empty", "audio-sound", "audio-silent")


def token_classes(layout, spec, grid_hw: tuple[int, int]) -> torch.Tensor:
    """int [L]: index into CLASSES for media tokens, −1 for text."""
    rows, cols = grid_hw
    out = torch.full((len(layout),), -1)
    for i in layout.media_mask.nonzero().squeeze(1).tolist():
        t = float(layout.time_s[i])
        if layout.modality[i] == int(Modality.AUDIO):
            sounding = any(e.start_s <= t < e.end_s for e in spec.sound_events)
            out[i] = 2 if sounding else 3
            continue
        r, c = int(layout.row[i]), int(layout.col[i])
        hit = False
        for e in spec.visual_events:
            for dt in (0.0, 0.5):  # the two frames of the pair (2 fps)
                if e.start_s <= t + dt < e.end_s:
                    x, y = e.position(t + dt)
                    half = e.size * min(spec.width, spec.height) / 2
                    cx0, cx1 = c / cols * spec.width, (c + 1) / cols * spec.width
                    cy0, cy1 = r / rows * spec.height, (r + 1) / rows * spec.height
                    if x * spec.width + half > cx0 and x * spec.width - half < cx1 and \
                            y * spec.height + half > cy0 and y * spec.height - half < cy1:
                        hit = True
        out[i] = 0 if hit else 1
    return out


class Recorder(Full):
    """Keeps everything; records per layer the scores of interest (not registered)."""

    name = "recorder"

    def attention_needs(self):
        from acckv_cli.methods.stash import AttentionNeeds
        return AttentionNeeds(all_rows=frozenset({"none", "position"}))

    def compress_layer(self, ctx) -> LayerResult:
        snap = get_method("snapkv", head_reduction="mean").score(ctx)
        snap = torch.where(torch.isinf(snap), torch.zeros_like(snap), snap)
        vnorm = ctx.values[0].float().norm(dim=-1).mean(0)  # [L], mean over KV heads
        scores = {"ar_text": redistributed_scores(ctx, ctx.rows("text"), "visible_count", "mean"),
                  "ar_all": redistributed_scores(ctx, ctx.rows("all"), "visible_count", "mean"),
                  "h2o": ctx.reduce(ctx.accumulate(ctx.rows("all")), "mean"),
                  "snapkv": snap, "vnorm": vnorm}
        scores["ar_text_v"] = scores["ar_text"] * vnorm
        scores["ar_all_v"] = scores["ar_all"] * vnorm
        scores["knorm_neg"] = -ctx.keys[0].float().norm(dim=-1).mean(0)
        return LayerResult(torch.arange(ctx.length, device=ctx.keys.device),
                           stats={"scores": {k: v.cpu() for k, v in scores.items()}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--protocol", default="context", choices=("context", "query-aware"))
    parser.add_argument("--data-dir", default=".acckv/synthavqa")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lm = load_model()
    items = synthavqa_items("validation", args.clips, Path(args.data_dir))
    sums: dict[tuple[str, int], torch.Tensor] = {}
    for video in dict.fromkeys(i.video for i in items):
        item = next(i for i in items if i.video == video)
        spec = make_example("validation", int(Path(video).stem.split("-")[1])).spec
        session = ClipSession(lm, decode(video, max_pixels=lm.pixel_range[1]))
        grid = session.prompt.inputs["video_grid_thw"][0]
        answer = session.ask([item.question], Recorder(), Budget(1.0), args.protocol, max_new_tokens=1)[0]
        classes = token_classes(answer.layout, spec, (int(grid[1]) // 2, int(grid[2]) // 2))
        share = torch.stack([(classes == c).float().sum() for c in range(4)])
        for layer in answer.report.layers:
            for name, s in layer["scores"].items():
                s = s.clamp(min=0)
                mass = torch.stack([s[classes == c].sum() for c in range(4)])
                mass = mass / mass.sum().clamp(min=1e-12)
                key = (name, layer["layer"])
                sums[key] = sums.get(key, torch.zeros(2, 4)) + torch.stack([mass, share / share.sum()])
    print(f"enrichment = score share / token share, {args.clips} validation clips, protocol {args.protocol}")
    print(f"{'score':8s} {'layer':>5s} " + " ".join(f"{c:>13s}" for c in CLASSES))
    for (name, layer), v in sorted(sums.items()):
        enrich = v[0] / v[1].clamp(min=1e-12)
        print(f"{name:8s} {layer:5d} " + " ".join(f"{float(e):13.2f}" for e in enrich))
    _, token_share = next(iter(sums.values()))
    print("token share: " + " ".join(f"{c} {float(x) / len(sums) * len(sums) / args.clips:.2f}" for c, x in
                                    zip(CLASSES, next(iter(sums.values()))[1] / args.clips)))


if __name__ == "__main__":
    main()
