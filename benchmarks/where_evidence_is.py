"""Which scores, in which decoder layer, put a 5 % budget on the evidence of sparse SynthAVQA questions?

For validation questions of the sparse suite (evidence spans known exactly), each question is prefilled with
its media under the chosen protocol and every layer's candidate scores are recorded (nothing is evicted).
Per modality, the top `--keep` share of that modality's tokens by each score is taken, as AccKV fills one
modality's quota, and the share of the modality's evidence tokens it holds (recall) is divided by `--keep`,
the recall random eviction has on average: the *recall gain* (1 = no better than random; a token is
evidence when the interval it stands for overlaps a span, `methods.evidence`, so a video token is evidence
for every cell of a frame pair that overlaps the span). Scores:
  ar_question  AccKV's A-R over the question's rows (query-aware only)
  ar_text      A-R over the text rows after the media (AccKV's default `score_queries=text`)
  ar_all       A-R over all prompt rows
  salience     key salience (salience.py): distance from the modality's mean key
  random       uniform random scores (the reference: its gain is 1 up to sampling noise)

    python benchmarks/where_evidence_is.py --clips 12 --protocol query-aware
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from acckv_cli.answer.session import ClipSession
from acckv_cli.evaluation.evaluate import synthavqa_items
from acckv_cli.media.decode import decode
from acckv_cli.methods import Budget, LayerResult
from acckv_cli.methods.acckv import redistributed_scores
from acckv_cli.methods.evidence import evidence_mask
from acckv_cli.methods.full import Full
from acckv_cli.methods.salience import key_salience
from acckv_cli.model.layout import Modality
from acckv_cli.model.load import load_model

MODALITIES = {"audio": Modality.AUDIO, "video": Modality.VIDEO}


class Recorder(Full):
    """Keeps everything; records per layer the candidate scores over all prompt tokens (not registered)."""

    name = "recorder"

    def attention_needs(self):
        from acckv_cli.methods.stash import AttentionNeeds
        return AttentionNeeds(all_rows=frozenset({"none", "position"}))

    def compress_layer(self, ctx) -> LayerResult:
        scores = {"ar_text": redistributed_scores(ctx, ctx.rows("text"), "visible_count", "mean"),
                  "ar_all": redistributed_scores(ctx, ctx.rows("all"), "visible_count", "mean")}
        salience = torch.zeros(ctx.length)
        for kind in MODALITIES.values():
            salience = salience + key_salience(ctx.keys, ctx.mask(kind)).cpu()
        scores["salience"] = salience
        question = ctx.rows("question")
        if question.numel():
            scores["ar_question"] = redistributed_scores(ctx, question, "visible_count", "mean")
        return LayerResult(torch.arange(ctx.length, device=ctx.keys.device),
                           stats={"scores": {k: v.float().cpu() for k, v in scores.items()}})


def recall_gain(score: torch.Tensor, mask: torch.Tensor, evidence: torch.Tensor, keep: float) -> float | None:
    """(evidence tokens among the top `keep` of `mask` by `score`) / (evidence tokens of `mask`) / keep."""
    idx = mask.nonzero().squeeze(1)
    target = evidence[idx]
    if not bool(target.any()):
        return None
    k = max(1, round(keep * idx.numel()))
    top = score[idx].topk(k).indices
    return float(target[top].sum()) / float(target.sum()) / keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--protocol", default="query-aware", choices=("context", "query-aware"))
    parser.add_argument("--keep", type=float, default=0.05)
    parser.add_argument("--model", default=None)
    parser.add_argument("--data-dir", default=".acckv/synthavqa")
    args = parser.parse_args()
    torch.manual_seed(0)
    lm = load_model(args.model)
    items = synthavqa_items("validation", args.clips, Path(args.data_dir), suite="sparse")
    gains: dict[tuple[str, int, str], list[float]] = {}
    for video in dict.fromkeys(i.video for i in items):
        session = ClipSession(lm, decode(video, max_pixels=lm.pixel_range[1]))
        for item in (i for i in items if i.video == video):
            answer = session.ask([item.question], Recorder(), Budget(1.0), args.protocol, max_new_tokens=1)[0]
            inside = evidence_mask(answer.layout, item.evidence)
            modality = answer.layout.modality
            for layer in answer.report.layers:
                scores = dict(layer["scores"])
                scores["random"] = torch.rand(len(inside))
                for name, s in scores.items():
                    for label, kind in MODALITIES.items():
                        g = recall_gain(s, modality == int(kind), inside, args.keep)
                        if g is not None:
                            gains.setdefault((name, layer["layer"], label), []).append(g)
    names = sorted({n for n, _, _ in gains})
    layers = sorted({l for _, l, _ in gains})
    print(f"recall gain of the top {args.keep:.0%} per modality (1 = random), {len(items)} sparse validation "
          f"questions, {args.clips} clips, protocol {args.protocol}")
    print(f"{'score':12s} {'modality':8s} " + " ".join(f"{'L' + str(l):>6s}" for l in layers) + "   n")
    for name in names:
        for label in MODALITIES:
            row = [gains.get((name, l, label), []) for l in layers]
            if not any(row):
                continue
            print(f"{name:12s} {label:8s} " + " ".join(f"{sum(v) / len(v):6.2f}" if v else "     –" for v in row)
                  + f"   {len(row[0])}")


if __name__ == "__main__":
    main()
