"""The command-line form of the shared options: one definition and one help text per option.

The values they produce are validated by `acckv_cli.options` (`RunOptions`, `MethodSpec`, budgets, protocols).
"""

from __future__ import annotations

import typer

from acckv_cli.options import Device, Dtype


PROTOCOL_HELP = ("Where the cache is compressed relative to the question: query-aware (media + question "
                 "compressed, then the assistant header and the answer run through the compressed cache), "
                 "context (media compressed before any question; one compressed cache serves every question), "
                 "prefill (the whole prompt prefilled before compressing: the first answer token comes from the "
                 "full cache, so short answers cannot see compression) or stream (long clips: decoded, encoded "
                 "and prefilled 2 s at a time, the cache compressed after each chunk so memory stays flat; then "
                 "as context).")
MODEL = typer.Option(None, "--model", help="Hub id (already cached) or local folder of a Qwen2.5-Omni or Qwen3-Omni "
                                           "checkpoint (full or thinker-only); default: the built-in model.")
METHOD = typer.Option("acckv", "--method", "-m", help="KV compression method: NAME or NAME:key=value,... "
                                                     "(`acckv methods --options` lists them).")
METHOD_OPTIONS = typer.Option(None, "--option", "-o", help="A hyperparameter of --method as KEY=VALUE, "
                                                            "repeatable (e.g. -o tau=0.9 -o merge=none).")
BUDGET = typer.Option("0.2", "--budget", "-b", help="Media entries kept per layer: a ratio of the media tokens "
                                                     "(0.2, 20%) or a count (160); text is always kept on top.")
PROTOCOL = typer.Option("query-aware", "--protocol", help=PROTOCOL_HELP)
DEVICE = typer.Option(Device.auto, "--device", help="Where the model runs.")
DTYPE = typer.Option(Dtype.auto, "--dtype", help="Weights dtype (auto: bfloat16 on a GPU, float32 on a CPU).")
FPS = typer.Option(2.0, "--fps", help="Frames sampled per second (at least 1, as Qwen's audio/video interleave needs).")
MAX_PIXELS = typer.Option(None, "--max-pixels", help="Pixel cap per frame (default: the model's range).")
MAX_NEW_TOKENS = typer.Option(32, "--max-new-tokens", help="Longest answer in tokens.")
OFFICIAL_FPS = typer.Option(False, "--official-fps", help="Tell the processor no frame rate (it then assumes 2 fps), "
                                                          "exactly as Qwen's README call; default: the true sampled rate.")
