"""`acckv index`: save each clip's compressed media cache to `<stem>.acckv`, to answer from it later.

Everything that can be checked without the model is checked first (inputs, protocol, budget, method, the
output folder, existing files), so a usage error costs no model load. Existing files follow `batch`'s rule:
refused without `--resume` (keep them: they were written whole, and their settings must be the ones asked
for) or `--overwrite`. A clip that fails is one `error:` line and the others go on; the exit code is then 1.
"""

from __future__ import annotations

import time
from pathlib import Path

from acckv_cli.errors import Fail
from acckv_cli.options import MethodSpec, RunOptions, parse_budget, parse_protocol
from acckv_cli.terminal import classify, err, notice, out, print_error, quiet_libraries


def collect_clips(sources: list[str]) -> list[Path]:
    """The clips to index: files as given, folders searched recursively for video and audio files; each clip
    once. Two clips with one stem would write the same `<stem>.acckv`, so that is refused."""
    from acckv_cli.answer.cachename import SUFFIX, is_cache_path
    from acckv_cli.batch.local import media_files

    clips: list[Path] = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise Fail(f"not found: {source!r}", 2)
        if path.is_dir():
            found = media_files(path)
            if not found:
                raise Fail(f"no video or audio file in folder {source!r}", 2)
            clips += found
        elif is_cache_path(path):
            raise Fail(f"{source!r} is already a cache file: index the video it was made from", 2)
        else:
            clips.append(path)
    unique = list({clip.resolve(): clip for clip in clips}.values())
    by_stem: dict[str, Path] = {}
    for clip in unique:
        if clip.stem in by_stem:
            raise Fail(f"{by_stem[clip.stem]} and {clip} would both be saved as {clip.stem}{SUFFIX}: index them "
                       f"into different --out-dir folders", 2)
        by_stem[clip.stem] = clip
    return unique


def differences(header: dict, settings: dict, clip: Path) -> list[str]:
    """How an existing file's settings differ from those asked for (empty when `--resume` may keep it)."""
    out = []
    if (header["method"]["name"], header["method"]["params"]) != (settings["method"]["name"],
                                                                   settings["method"]["params"]):
        out.append(f"method {header['method'].get('label', header['method']['name'])}")
    if header["budget"]["value"] != settings["budget"]["value"]:
        out.append(f"budget {header['budget']['text']}")
    if header["protocol"] != settings["protocol"]:
        out.append(f"protocol {header['protocol']}")
    for key, value in settings["preprocessing"].items():
        if header["preprocessing"].get(key) != value:
            out.append(f"{key.replace('_', '-')} {header['preprocessing'].get(key)}")
    if header["source"]["name"] != clip.name or header["source"]["size"] != clip.stat().st_size:
        out.append(f"another source ({header['source']['name']}, {header['source']['size']} bytes)")
    return out


def run(sources: list[str], out_dir: str, resume: bool, overwrite: bool, opts: RunOptions, spec: MethodSpec,
        budget: str, protocol: str) -> None:
    from acckv_cli.answer.cachefile import SUFFIX, read_header
    from acckv_cli.answer.indexed import IndexRequest, check_index_protocol

    protocol = check_index_protocol(parse_protocol(protocol))
    request = IndexRequest(spec.name, tuple(sorted(spec.params.items())), spec.label, parse_budget(budget), protocol,
                           opts.fps, opts.max_pixels, opts.official_fps)
    if protocol == "stream":  # a method that cannot stream fails every clip: say so once, before the model loads
        from acckv_cli.methods.streaming import stream_refusal
        if (reason := stream_refusal(spec.build())) is not None:
            raise Fail(reason, 2)
    if resume and overwrite:
        raise Fail("--resume and --overwrite exclude each other", 2)
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise Fail(f"--out-dir {out_dir!r} is not a directory", 2)
    targets = [(clip, folder / f"{clip.stem}{SUFFIX}") for clip in collect_clips(sources)]
    existing = [(clip, target) for clip, target in targets if target.exists()]
    if existing and not (resume or overwrite):
        raise Fail(f"{len(existing)} cache file(s) already in {out_dir} (e.g. {existing[0][1].name}): pass --resume "
                   f"to keep them or --overwrite to replace them", 2)
    kept = {}
    if resume:
        settings = request.settings()
        for clip, target in existing:
            header = read_header(str(target))  # an unusable file is one line here, before the model loads
            if changed := differences(header, settings, clip):
                raise Fail(f"{target} was indexed with {', '.join(changed)}: pass --overwrite to replace it", 2)
            kept[target] = header
    todo = [(clip, target) for clip, target in targets if target not in kept]
    lm = None
    if todo or kept:
        quiet_libraries()
        lm = opts.load()
        for text in lm.notices:
            notice(text)
    if kept:
        from acckv_cli.answer.cachefile import check_model
        for target, header in kept.items():
            check_model(header, lm, str(target))  # kept files must answer with this model
    folder.mkdir(parents=True, exist_ok=True)
    done, failed, written, start = 0, 0, 0, time.perf_counter()
    if todo:
        from acckv_cli.answer.indexed import index_to_file
        with _progress() as bar:
            task = bar.add_task(f"→ {out_dir}", total=len(todo))
            for clip, target in todo:
                try:
                    written += index_to_file(lm, str(clip), target, request)
                    done += 1
                except KeyboardInterrupt:
                    bar.stop()
                    raise Fail(f"interrupted; finished cache files are in {out_dir}: rerun with --resume to "
                               f"continue", 130) from None
                except Exception as exc:  # one clip's failure is one line; the rest go on
                    failed += 1
                    print_error(f"{clip}: {classify(exc)}")
                bar.advance(task)
    out.print(summary_table(out_dir, len(targets), done, failed, len(kept), time.perf_counter() - start, written))
    if failed:
        raise Fail(f"{failed} of {len(todo)} clip(s) could not be indexed (see above)", 1)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]index[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err)


def summary_table(out_dir: str, total: int, done: int, failed: int, skipped: int, seconds: float, written: int):
    from rich.table import Table

    table = Table(title=f"index summary → {out_dir}", title_justify="left")
    for col in ("clips", "indexed", "failed", "kept (resumed)", "time", "written"):
        table.add_column(col, justify="right")
    table.add_row(str(total), str(done), str(failed), str(skipped), f"{seconds:.1f} s", f"{written / 2**20:.2f} MB")
    return table
