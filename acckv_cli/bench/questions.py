"""`acckv bench --question-counts 1,4,10`: what many questions about one clip cost, with and without media reuse.

The same random 3B-shaped thinker and synthetic 8k-token audio-video prompt as the rest of `acckv bench`,
run through the real `ClipSession` (segmented prefill, compression, greedy decoding with a fixed number of
new tokens). Two ways of answering N questions, interleaved question by question so background load hits
both alike:

* **reuse** — one session: the media is prefilled once (and, under `context`, compressed once); each
  question then runs its own tokens (and, under `query-aware`, its own compression) and decodes.
* **no reuse** — a fresh session per question: media prefill, compression and decode every time (what
  answering each question separately costs).

The wall time of the first N questions is the cumulative time after the N-th answer, so one run of the
largest N gives every smaller N. Target: with reuse, N = 10 takes ≤ 1.3× the time of N = 1.
"""

from __future__ import annotations

import time

import torch

from acckv_cli.bench.prompts import SyntheticMediaPrompt
from acckv_cli.methods import Budget, get_method
from acckv_cli.model.load import LoadedModel
from acckv_cli.answer.session import ClipSession

TARGET_RATIO = 1.3


def run_questions(thinker, prompt, counts: tuple[int, ...], protocols: tuple[str, ...], method: str = "acckv",
                  budget: float = 0.2, new_tokens: int = 16, progress=None) -> dict:
    """Cumulative wall time of the first N questions, with and without media reuse, per protocol."""
    lm = LoadedModel(thinker, None, "bench", torch.device("cpu"), thinker.dtype)
    media = SyntheticMediaPrompt.split(prompt)
    embedded = {"input_ids": prompt.input_ids[:, :media.length]}
    n_max = max(counts)
    compressor, parsed = get_method(method), Budget(budget)
    out = {"method": method, "budget": budget, "new_tokens": new_tokens, "prompt_tokens": int(prompt.input_ids.shape[1]),
           "prefix_tokens": media.length, "question_tokens": len(prompt.layout) - media.length, "protocols": []}
    for protocol in protocols:
        reuse_t, fresh_t, parts = [], [], []
        shared = ClipSession.from_prompt(lm, media, embedded)
        media_cache = None
        for i in range(n_max):
            if progress:
                progress(f"{protocol}: question {i + 1}/{n_max}")
            start = time.perf_counter()
            fresh = ClipSession.from_prompt(lm, media, embedded)
            answer = fresh.answer(f"q{i}", fresh.media_cache_for(protocol, compressor, parsed), protocol, compressor,
                                  parsed, new_tokens)
            fresh_t.append(time.perf_counter() - start)
            assert len(answer.token_ids) == new_tokens
            start = time.perf_counter()
            if media_cache is None:
                media_cache = shared.media_cache_for(protocol, compressor, parsed)
            answer = shared.answer(f"q{i}", media_cache, protocol, compressor, parsed, new_tokens)
            reuse_t.append(time.perf_counter() - start)
            parts.append(answer.timings)
        rows = []
        for n in counts:
            reuse, fresh = sum(reuse_t[:n]), sum(fresh_t[:n])
            rows.append({"questions": n, "reuse_s": round(reuse, 3), "no_reuse_s": round(fresh, 3),
                         "speedup": round(fresh / reuse, 2) if reuse else None})
        one = rows[0]["reuse_s"] if counts[0] == 1 else None
        for row in rows:
            row["reuse_vs_one"] = round(row["reuse_s"] / one, 3) if one else None
        per_question = {k: round(sum(p[k] for p in parts[1:]) / max(1, len(parts) - 1), 4)
                        for k in ("question_prefill_s", "generate_s")}
        out["protocols"].append({"protocol": protocol, "rows": rows, "media_prefill_s": parts[0]["media_prefill_s"],
                                 "per_later_question": per_question})
    largest = [p["rows"][-1] for p in out["protocols"]]
    out["target"] = {"target": f"reuse: {n_max} questions ≤ {TARGET_RATIO}× the time of one",
                     "measured": {p["protocol"]: p["rows"][-1]["reuse_vs_one"] for p in out["protocols"]},
                     "pass": all(r["reuse_vs_one"] is not None and r["reuse_vs_one"] <= TARGET_RATIO for r in largest)}
    return out


def render(result: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"{result['prompt_tokens']}-token clip, {result['method']} @ {result['budget']:g}, "
                        f"{result['new_tokens']} new tokens per question", title_justify="left")
    for col in ("protocol", "questions", "reuse (s)", "no reuse (s)", "no reuse / reuse", "reuse vs 1 question"):
        table.add_column(col, justify="right")
    for p in result["protocols"]:
        for row in p["rows"]:
            table.add_row(p["protocol"], str(row["questions"]), f"{row['reuse_s']:.2f}", f"{row['no_reuse_s']:.2f}",
                          f"×{row['speedup']:.2f}", f"×{row['reuse_vs_one']:.2f}" if row["reuse_vs_one"] else "–")
    console.print(table)
    for p in result["protocols"]:
        later = p["per_later_question"]
        console.print(f"{p['protocol']}: media prefill {p['media_prefill_s']:.2f} s once; each later question "
                      f"{later['question_prefill_s']:.2f} s prompt + {later['generate_s']:.2f} s decode")
    t = result["target"]
    console.print(f"target: {t['target']} — measured {t['measured']} — {'pass' if t['pass'] else 'FAIL'}")
