"""`acckv batch --workers N`: the same items on a Ray cluster, written by the driver alone.

Design (Ray Core, not Ray Data):
- A pool of N stateful actors (`VideoWorker`); each loads the model once and answers *whole videos*, so the
  questions of one video share its decode, encoders and media prefill. A worker runs the same per-video
  function as the local runner, `batch.run_video`, as a streaming generator: its records reach the driver
  one by one as they are answered, not when the video is done.
- The driver schedules one video per idle worker, writes each record on arrival with the local runner's
  `LineWriter` (one `os.write` per complete line; the workers never touch `--out`), advances the progress
  bar and keeps the tally. Lines are in completion order; each carries its `key`.
- Exactly once: the driver writes a record only if its key is one it is still waiting for, and forgets the
  key when it writes it, so a duplicate delivery (a retried video whose first attempt was not quite dead)
  is never written twice.
- Worker death (process killed, out of memory, node lost): the video's records not yet received are
  resubmitted, first in line, to the next idle worker. Ray restarts the dead actor (`max_restarts`); it
  rejoins the pool once it has loaded the model again. Ray's own task retry is off (`max_task_retries=0`):
  it would rerun the whole generator behind the driver's back. A video whose worker dies on it
  `MAX_ATTEMPTS` times (it crashes whatever runs it) gets an error line per unfinished item, as a
  corrupt file does, and the run goes on. If no worker is left, the run stops with exit code 1, its
  finished lines kept for `--resume`.

Why not Ray Data (`map_batches` with an actor pool): its fault tolerance retries whole blocks inside the
engine, so exactly-once output would need the same key bookkeeping on the driver anyway, on top of
per-row batching that splits a video's questions across calls (losing the shared prefill) and a pyarrow
dependency; Ray Core's actors + `ray.wait` on streaming generators express "one video, answers as they
come, resubmit the rest on death" directly.

The workers import the driver's own `acckv_cli` (shipped with the job as a Ray `py_modules` runtime env),
so every node runs the same code as the command that started the job; its dependencies (torch,
transformers, ...) must be installed on every node. They work in the driver's working directory where it
exists, so relative video and model paths mean the same on every node that mounts the same storage.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field

from acckv_cli.batch.local import Item, Options, Tally, _error_record, add_to_tally, group_by_video
from acckv_cli.errors import Fail
from acckv_cli.terminal import classify, err

INSTALL_HINT = ("--workers needs Ray, which is not installed: pip install 'acckv[ray]' "
                "(from a checkout: pip install -e '.[ray]')")
MAX_ATTEMPTS = 3      # tries of a video whose worker fails (dies, or raises outside run_video) before it is done
MAX_RESTARTS = 4      # Ray restarts a dead worker this many times
RESTART_POLL_S = 0.5  # how often to ask a restarting worker whether it is back
WAIT_S = 1.0          # ray.wait timeout: Ctrl-C is seen at least this often
PROBE_TIMEOUT_S = 10.0  # connecting to --ray-address HOST:PORT before handing it to Ray
SLOW_START_S = 60.0   # after this long with no worker ready, say what the driver is waiting for


@dataclass
class RayConfig:
    workers: int
    address: str | None = None    # None: start a local Ray instance; "auto" or HOST:PORT: connect
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"


@dataclass
class RayStats:
    deaths: int = 0               # worker processes lost while answering a video
    retried: int = 0              # items resubmitted after a worker failure
    gave_up: int = 0              # items recorded as errors after MAX_ATTEMPTS failures
    workers: dict = field(default_factory=dict)  # worker index -> {"pid", "node", "device"} of its last start
    ready_at: dict = field(default_factory=dict)  # worker index -> time.perf_counter() its model was last loaded


def import_ray():
    try:
        import ray
    except ImportError:
        raise Fail(INSTALL_HINT, 1) from None
    return ray


def check_config(cfg: RayConfig) -> None:
    """Usage errors of the Ray options, before anything starts."""
    if cfg.workers < 1:
        raise Fail(f"--workers must be at least 1, not {cfg.workers}", 2)
    if cfg.gpus_per_worker < 0:
        raise Fail(f"--gpus-per-worker must be 0 or more, not {cfg.gpus_per_worker:g}", 2)
    if cfg.cpus_per_worker <= 0:
        raise Fail(f"--cpus-per-worker must be more than 0, not {cfg.cpus_per_worker:g}", 2)
    if cfg.device == "cuda" and cfg.gpus_per_worker == 0:
        raise Fail("--device cuda with --workers needs --gpus-per-worker (e.g. 1): Ray hides the GPUs from a "
                   "worker that did not ask for one", 2)
    if cfg.address is not None and not cfg.address.strip():
        raise Fail("--ray-address is empty: pass auto or HOST:PORT", 2)


class VideoWorker:
    """One Ray actor: loads the model once, then answers whole videos with `batch.run_video`."""

    def __init__(self, model: str | None, device: str, dtype: str, threads: int, cwd: str):
        import torch

        torch.set_num_threads(threads)
        if os.path.isdir(cwd):  # relative video and model paths mean what they mean on the driver
            os.chdir(cwd)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self._spec = (model, device, dtype)
        self._lm = None

    def _model(self):
        if self._lm is None:
            from acckv_cli.terminal import quiet_libraries
            from acckv_cli.model.load import load_model

            quiet_libraries()
            self._lm = load_model(*self._spec)
        return self._lm

    def load(self) -> dict:
        """Load the model; where this worker runs, or the one-line error that stopped it."""
        import ray

        try:
            lm = self._model()
        except Exception as exc:
            fail = classify(exc)
            return {"error": str(fail), "code": fail.exit_code}
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": str(lm.device),
                "notices": list(lm.notices)}

    def run_video(self, items: list[Item], options: Options):
        from acckv_cli.batch.local import run_video

        yield from run_video(self._model(), items, options)


@dataclass
class _Running:
    worker: int
    items: list[Item]             # the video's items whose records have not arrived yet
    attempts: int                 # deaths this video has seen before this attempt


def start_ray(ray, cfg: RayConfig, verbose: bool) -> None:
    """Connect to the cluster at `cfg.address`, or start a local instance sized for the workers."""
    import acckv_cli

    runtime_env = {"py_modules": [os.path.dirname(os.path.abspath(acckv_cli.__file__))],
                   "excludes": ["__pycache__", "*.pyc"]}
    if os.environ.get("HF_HUB_OFFLINE"):  # offline on the driver: offline on the workers too
        runtime_env["env_vars"] = {"HF_HUB_OFFLINE": os.environ["HF_HUB_OFFLINE"]}
    common = dict(runtime_env=runtime_env, log_to_driver=verbose, include_dashboard=False,
                  logging_level=logging.INFO if verbose else logging.ERROR)
    if cfg.address is not None:
        _probe(cfg.address)
    try:
        if cfg.address is None:
            # address="local": a new instance even if RAY_ADDRESS is set; only the CPUs the workers ask for
            ray.init(address="local", num_cpus=math.ceil(cfg.workers * cfg.cpus_per_worker),
                     object_store_memory=256 * 1024 * 1024, **common)
        else:
            ray.init(address=cfg.address, **common)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "start a local Ray instance" if cfg.address is None else f"connect to Ray at {cfg.address!r}"
        raise Fail(f"cannot {where}: {first}", 1) from None
    total = ray.cluster_resources()
    need = {"CPU": cfg.cpus_per_worker, "GPU": cfg.gpus_per_worker}
    for name, amount in need.items():
        if amount and total.get(name, 0) < amount:
            raise Fail(f"one worker needs {amount:g} {name}(s) but the Ray cluster has {total.get(name, 0):g}; "
                       f"lower --{name.lower()}s-per-worker or add nodes", 2)
    fit = min(int(total.get(name, 0) // amount) for name, amount in need.items() if amount)
    if fit < cfg.workers:
        _note(f"the Ray cluster has room for {fit} of the {cfg.workers} workers now; the others start "
              "when resources free up")


def _probe(address: str) -> None:
    """Fail in one line, at once, if HOST:PORT does not accept connections (`ray.init` would retry for
    minutes, logging every attempt). `auto` and `ray://` addresses are left to Ray."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or address.startswith("ray://") or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise Fail(f"cannot connect to Ray at {address!r}: {exc.strerror or str(exc) or 'timed out'} (start it with "
                   "`ray start --head` there, or check the address)", 1) from None


@contextlib.contextmanager
def cluster(cfg: RayConfig, verbose: bool = False):
    """Ray started (or connected to) and checked for room for a worker; shut down (local instance stopped,
    workers released) on exit. Yields the `ray` module."""
    ray = import_ray()
    try:
        start_ray(ray, cfg, verbose)
        yield ray
    finally:
        ray.shutdown()


def run(items: list[Item], options: Options, write, cfg: RayConfig, on_item=None, stats: RayStats | None = None,
        ray=None) -> Tally:
    """Answer `items` on `cfg.workers` Ray workers; `write(record)` once per item on the driver, as they arrive.

    Runs inside `cluster(cfg)` (pass its `ray`). Raises `Fail` (exit 1) if no worker can load the model or
    every worker is gone; the records written by then stay written.
    """
    ray = ray or import_ray()
    stats = stats if stats is not None else RayStats()
    tally = Tally()
    start = time.perf_counter()
    _drive(ray, items, options, write, cfg, on_item, tally, stats)
    tally.seconds = time.perf_counter() - start
    return tally


def _drive(ray, items, options, write, cfg, on_item, tally, stats) -> None:
    from ray.exceptions import ActorUnavailableError, RayActorError, RayError

    threads = max(1, int(cfg.cpus_per_worker))
    actor_cls = ray.remote(VideoWorker).options(num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker,
                                                max_restarts=MAX_RESTARTS, max_task_retries=0)
    actors = [actor_cls.remote(cfg.model, cfg.device, cfg.dtype, threads, os.getcwd()) for _ in range(cfg.workers)]
    loading = {actors[w].load.remote(): w for w in range(cfg.workers)}  # load ref -> worker
    idle: list[int] = []
    running: dict = {}                      # streaming generator -> _Running
    probes: list[tuple[float, int]] = []    # (when, worker): ask a restarting worker whether it is back
    gone: set[int] = set()                  # workers that will not come back
    queue = deque((group, 0) for group in group_by_video(items))  # (items still to answer, deaths so far)
    waiting = {it.key for it in items}      # keys not yet written
    load_errors: list[str] = []
    notices_shown = False
    t_start = time.monotonic()
    slow_noted = False

    def emit(record: dict, item: Item) -> None:
        if record.get("key") not in waiting:  # a duplicate delivery: already written
            return
        waiting.discard(record["key"])
        write(record)
        add_to_tally(tally, record)
        if on_item is not None:
            on_item(item)

    def lost(worker: int, job: _Running, reason: str) -> None:
        """`job.items` were not answered on `worker`: resubmit them, or give up after MAX_ATTEMPTS."""
        attempts = job.attempts + 1
        left = [it for it in job.items if it.key in waiting]
        if not left:
            return
        name = os.path.basename(left[0].video)
        if attempts >= MAX_ATTEMPTS:
            fail = Fail(f"{attempts} workers failed while answering this video (last: {reason}); rerun with "
                        "--resume to try it again", 1)
            for item in left:
                emit(_error_record(item, options, fail, 0.0), item)
            stats.gave_up += len(left)
            _note(f"gave up on {len(left)} item(s) of {name} after {attempts} failed workers ({reason})")
        else:
            stats.retried += len(left)
            queue.appendleft((left, attempts))
            _note(f"worker {worker} failed on {name} ({reason}); retrying its {len(left)} unfinished "
                  "item(s)")

    def died(worker: int) -> None:
        """The worker's process is gone mid-video: wait for Ray's restart, then for the model to load again."""
        stats.deaths += 1
        probes.append((time.monotonic(), worker))

    def probe(worker: int) -> None:
        loading[actors[worker].load.remote()] = worker

    while queue or running:
        now = time.monotonic()
        for due, worker in [p for p in probes if p[0] <= now]:
            probes.remove((due, worker))
            probe(worker)
        while idle and queue:
            worker = idle.pop(0)
            group, attempts = queue.popleft()
            gen = actors[worker].run_video.options(num_returns="streaming").remote(group, options)
            running[gen] = _Running(worker, list(group), attempts)
        if not loading and not running and not probes:
            reason = f" (last error: {load_errors[-1]})" if load_errors else ""
            raise Fail(f"no Ray worker is left to run the {len(waiting)} unfinished item(s){reason}; the finished "
                       "lines are kept: rerun with --resume", 1)
        waitables = [*loading, *running]
        timeout = min([WAIT_S, *(max(0.0, due - now) for due, _ in probes)])
        if waitables:
            ready, _ = ray.wait(waitables, num_returns=1, timeout=timeout)
        else:  # only restarting workers: ask them again when due
            time.sleep(timeout)
            ready = []
        if not ready:
            if not idle and not running and not slow_noted and time.monotonic() - t_start > SLOW_START_S:
                slow_noted = True
                _note(f"still waiting for a Ray worker to start (cluster: {ray.cluster_resources()}, "
                      f"free: {ray.available_resources()})")
            continue
        handle = ready[0]
        if handle in loading:
            worker = loading.pop(handle)
            try:
                info = ray.get(handle)
            except ActorUnavailableError:  # Ray is restarting it: ask again shortly
                probes.append((time.monotonic() + RESTART_POLL_S, worker))
                continue
            except RayActorError as exc:  # dead for good (restarts used up, or its node is gone)
                gone.add(worker)
                load_errors.append(f"worker {worker}: {_first_line(exc)}")
                continue
            except RayError as exc:       # not expected: load() catches its own errors
                gone.add(worker)
                load_errors.append(_first_line(exc))
                continue
            if "error" in info:
                gone.add(worker)
                load_errors.append(info["error"])
                if len(gone) == cfg.workers:  # nobody can load the model: that error, as the local run gives it
                    raise Fail(info["error"], info["code"])
                _note(f"worker {worker} cannot load the model: {info['error']}")
                continue
            stats.workers[worker] = {k: info[k] for k in ("pid", "node", "device")}
            stats.ready_at[worker] = time.perf_counter()
            if not notices_shown:
                notices_shown = True
                for notice in info["notices"]:
                    err.print(f"[yellow]note:[/yellow] {notice}", highlight=False)
            idle.append(worker)
            continue
        job = running[handle]
        try:
            record = ray.get(next(handle))
        except StopIteration:  # the video is done
            del running[handle]
            lost(job.worker, job, "it returned fewer answers than questions")  # no-op when all arrived
            idle.append(job.worker)
            continue
        except RayActorError:
            del running[handle]
            lost(job.worker, job, "worker process died")
            died(job.worker)
            continue
        except RayError as exc:  # an exception outside run_video's own handling (e.g. reloading the model)
            del running[handle]
            lost(job.worker, job, _first_line(exc))
            idle.append(job.worker)
            continue
        item = next((it for it in job.items if it.key == record.get("key")), None)
        if item is not None:
            job.items.remove(item)
            emit(record, item)


def _note(text: str) -> None:
    err.print(f"note: {text}", markup=False, highlight=False, soft_wrap=True)


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
