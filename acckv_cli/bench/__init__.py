"""`acckv bench`: what KV compression costs and saves, measured on a random Qwen2.5-Omni-3B-shaped thinker.

Three modes, one module each, on shared pieces:

* `costs` (default): prefill overhead, decode speed, KV bytes and peak memory of every method at prompts
  of N tokens; its options in `config`, its measurements in `prefill` (each method's per-layer step) and
  `decode` (ms per token and the split of a step), checked by `targets`, shown by `render` and `plot`;
* `questions` (`--questions`): many questions about one clip, with and without media reuse;
* `stream` (`--stream`): streaming vs one-shot prefill against clip length, one fresh process per point.

Shared: `shapes` (the model's shape and the random thinker), `prompts` (synthetic audio-video prompts
with their `TokenLayout`), `memory` (peak RSS of a phase), `machine` (what the bench ran on).
The command itself is declared in `acckv_cli/cli/app.py`; its bodies are in `acckv_cli/cli/commands/bench.py`.
"""
