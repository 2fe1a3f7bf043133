"""The command-line form of the shared options: one definition, one help text and one metavar per option.

The values they produce are validated by `acckv_cli.options` (`RunOptions`, `MethodSpec`, budgets, protocols).
Every option names its value (`FOLDER|HUB_ID`, `KEY=VALUE`) instead of Typer's `<str>`; choices are listed.
"""

from __future__ import annotations

import typer

from acckv_cli.media.probe import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from acckv_cli.options import PROTOCOLS, Device, Dtype
from acckv_cli.terminal import set_verbose


def _listed(extensions: set[str]) -> str:
    return ", ".join(sorted(e.lstrip(".") for e in extensions))


# The one list of inputs, from the probe's own tables (README and docs/commands.md name the same; a test checks).
MEDIA_HELP = (f"Video ({_listed(VIDEO_EXTENSIONS)}) or audio file ({_listed(AUDIO_EXTENSIONS)}).")
PROTOCOL_METAVAR = "|".join(PROTOCOLS)
PROTOCOL_HELP = ("Where the cache is compressed relative to the question: query-aware (media + question "
                 "compressed, then the assistant header and the answer run through the compressed cache), "
                 "context (media compressed before any question; one compressed cache serves every question), "
                 "prefill (the whole prompt prefilled before compressing: the first answer token comes from the "
                 "full cache, except under fastv's prune mode, so short answers cannot see compression) or stream "
                 "(long clips: prefilled a step at a "
                 "time, --chunk-seconds, the cache compressed after each step so memory stays flat; then as "
                 "context).")

VIDEO = typer.Argument(..., metavar="VIDEO", help=MEDIA_HELP)
MODEL = typer.Option(None, "--model", metavar="FOLDER|HUB_ID",
                     help="Local folder of a Qwen2.5-Omni or Qwen3-Omni checkpoint (full or thinker-only), or a hub "
                          "id already in the Hugging Face cache (nothing is downloaded); default: the built-in "
                          "demo model.")
METHOD_METAVAR = "NAME[:KEY=VALUE,...]"
METHOD = typer.Option(None, "--method", "-m", metavar=METHOD_METAVAR,
                      help="KV compression method and its options, e.g. -m snapkv or -m acckv:tau=0.9 (default "
                           "acckv; `acckv methods --options` lists every method's options).")
METHODS_COMPARED = typer.Option(None, "--method", "-m", metavar=METHOD_METAVAR,
                                help="KV compression method and its options, e.g. -m snapkv or -m acckv:tau=0.9 "
                                     "(default acckv); repeat to compare methods side by side on the same clip "
                                     "(`acckv methods --options` lists every method's options).")
METHOD_OPTIONS = typer.Option(None, "--option", "-o", metavar="KEY=VALUE",
                              help="A hyperparameter of every -m method, repeatable (e.g. -m acckv -o tau=0.9 "
                                   "-o merge_target=none).")
BUDGET = typer.Option(None, "--budget", "-b", metavar="BUDGET",
                      help="Media entries kept per layer: a ratio of the media tokens (0.2, 20%) or a count (160); "
                           "text is always kept on top. Default 0.2; `full` always keeps 100 %.")
PROTOCOL = typer.Option("query-aware", "--protocol", metavar=PROTOCOL_METAVAR, help=PROTOCOL_HELP)
DEVICE = typer.Option(Device.auto, "--device", help="Where the model runs.")
DTYPE = typer.Option(Dtype.auto, "--dtype", help="Weights dtype (auto: bfloat16 on a GPU, float32 on a CPU).")
FPS = typer.Option(2.0, "--fps", metavar="FPS",
                   help="Frames sampled per second, between 1 and 30 (below 1, Qwen's audio and video chunks fall "
                        "out of step).")
MAX_PIXELS = typer.Option(None, "--max-pixels", metavar="PIXELS", help="Pixel cap per frame (default: the model's "
                                                                       "range).")
# Checked with the other arguments, before torch (`options.parse_chunk_seconds`).
CHUNK_SECONDS = typer.Option(None, "--chunk-seconds", metavar="SECONDS",
                             help="Seconds of clip per step of --protocol stream, a multiple of Qwen's 2-s chunk "
                                  "(default: the fewest 2-s chunks holding 512 tokens; the cache holds the budget "
                                  "plus one step).")
MAX_NEW_TOKENS = typer.Option(32, "--max-new-tokens", metavar="N", help="Longest answer in tokens.")
OFFICIAL_FPS = typer.Option(False, "--official-fps", help="Tell the processor no frame rate (it then assumes 2 fps), "
                                                          "exactly as Qwen's README call; default: the true sampled rate.")
JSON = typer.Option(False, "--json", help="Print JSON on stdout instead of tables.")
BENCHMARK_HELP = ("Read the manifest as this benchmark's own annotation file: worldsense, daily-omni, videomme, avqa, "
                  "music-avqa or omnivideobench (docs/benchmarks.md).")
MEDIA_ROOT_HELP = "Folder the videos of the manifest or benchmark file are found in (default: the file's folder)."


def _verbose(value: bool) -> bool:
    if value:  # the group's own -v (or its absence) was applied first; a command's -v only adds
        set_verbose(True)
    return value


# Accepted after the command as well as before it (`acckv ask … -v` and `acckv -v ask …`).
VERBOSE = typer.Option(False, "--verbose", "-v", callback=_verbose, is_eager=True,
                       help="Debug logs, and a failure's traceback, on stderr.")
