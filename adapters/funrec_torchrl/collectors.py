"""Recording inside TorchRL's collectors: fold in every worker, ship the states, merge.

A :class:`CollectorRecorder` is a collector's ``post_collect_hook``. TorchRL
copies it into every worker (``MultiSyncCollector``, ``MultiAsyncCollector``,
``RayCollector``, ``Evaluator(backend="process")``), where it folds a funrec
recorder over each batch the worker collects and streams frames to that
worker's own video files. :func:`gather` asks every worker for its state,
finishes its files and merges the states with ``funrec.merge``: only the states
travel (a few hundred bytes when frames are streamed), never the pixels.
:class:`VideoLogger` is a TorchRL logger that writes videos with funrec's
writers, for one ``ProcessLogger`` / ``RayLogger`` service serving many workers.
See docs/workers.md.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tensordict import TensorDictBase
from torchrl.record.loggers.csv import CSVLogger

import funrec
from funrec import RecorderError
from funrec.writers import VideoDirectory, VideoWriter, open_video, write_drained

_STATE_SUFFIX = ".state"


class WorkerState(NamedTuple):
    """What one worker recorded, as :func:`gather` brings it back.

    Attributes:
        worker: the worker's index in the collector.
        label: the name its files carry: ``"worker<i>"``, or ``"<host>-<pid>"``
            for a worker that does not know its index (a Ray actor).
        state: its funrec state, its episodes marked with ``label`` as their
            ``origin``; frames already streamed to ``files`` are not in it.
        batches: the batches its hook folded.
        files: the video files it wrote (finished by ``gather(finish=True)``).
        recovered: True when the worker was gone and ``state`` is its last
            checkpoint (written after every batch it finished).
    """

    worker: int
    label: str
    state: Any
    batches: int
    files: tuple[str, ...]
    recovered: bool = False


class Gathered(NamedTuple):
    """The result of :func:`gather`.

    Attributes:
        state: ``funrec.merge`` of every worker state, in worker order, each
            episode's ``origin`` naming its worker's label (the
            recorder's ``init()`` when none answered; None if the hooks were
            given per Ray worker and none answered).
        workers: worker index -> :class:`WorkerState`, for each worker heard from
            (or recovered from its checkpoint).
        missing: worker index -> why it did not answer (dead, timed out, failed).
    """

    state: Any
    workers: dict[int, WorkerState]
    missing: dict[int, str]


class CollectorRecorder:
    """A funrec recorder run by a TorchRL collector inside each of its workers.

    Pass it as ``post_collect_hook=``. TorchRL calls it with every batch a
    worker collects; it folds ``recorder`` over the batch's time steps (the
    dim named ``"time"``, else the last) and, with a ``directory``, streams the
    frames of every ``frames()`` recorder to that worker's mp4 (the state keeps
    their counts, not the pixels) and checkpoints the state after each batch.
    Read the states back with :func:`gather`.

    Files are named by worker: ``<directory>/<stream>_<label>_<k>.mp4``, where
    ``<stream>`` is the name in ``funrec.named`` (``"video"`` for a lone
    ``frames()``), ``<label>`` is ``worker<i>`` (the worker index of a
    ``MultiSyncCollector`` / ``MultiAsyncCollector``, or ``worker=`` given
    here) or ``<host>-<pid>`` otherwise, and ``k`` counts the finishes. The
    checkpoint is ``<directory>/<label>.state``.

    Args:
        recorder: the funrec recorder to fold, e.g.
            ``funrec.named(video=funrec.frames("pixels"), stats=funrec.episode_stats())``.
        directory: where the workers write their videos and checkpoints; it must
            be new or empty (so no earlier run is overwritten). None writes
            nothing, and then ``recorder`` must not record frames.
        fps: frames per second of the videos.
        worker: this hook's worker index, when TorchRL does not tell it (one
            hook per Ray collector through ``collector_kwargs``).

    Example:
        >>> import funrec
        >>> from torchrl.collectors import MultiSyncCollector
        >>> hook = CollectorRecorder(funrec.episode_stats())
        >>> collector = MultiSyncCollector(
        ...     [make_env] * 2, policy, frames_per_batch=100, total_frames=1000,
        ...     post_collect_hook=hook)  # doctest: +SKIP
        >>> for batch in collector: ...  # doctest: +SKIP
        >>> funrec.episodes(gather(collector).state)  # doctest: +SKIP
    """

    def __init__(
        self,
        recorder: funrec.Recorder,
        directory: str | os.PathLike | None = None,
        *,
        fps: float = 30,
        worker: int | None = None,
    ) -> None:
        if not isinstance(recorder, funrec.Recorder):
            raise TypeError(
                f"CollectorRecorder(recorder=...): expected a funrec.Recorder, got "
                f"{type(recorder).__name__}; e.g. CollectorRecorder(funrec.episode_stats())."
            )
        if not fps > 0:
            raise ValueError(f"CollectorRecorder(fps={fps!r}): pass a positive number.")
        if worker is not None and (not isinstance(worker, int) or worker < 0):
            raise ValueError(f"CollectorRecorder(worker={worker!r}): pass an index >= 0 or None.")
        self.recorder = recorder
        self.directory = None if directory is None else Path(directory)
        self._streams = _frame_streams(recorder.init())
        if self.directory is not None:
            _check_new(self.directory)
        elif self._streams:
            raise RecorderError(
                "CollectorRecorder: the recorder records frames ("
                f"{', '.join(name or 'frames()' for name in self._streams)}) but no directory "
                "was given; pass directory= so each worker streams its frames to its own "
                "video and only the small state travels (frame streams of different workers "
                "are never merged into one)."
            )
        self.fps = fps
        self.worker = worker
        self.state = recorder.init()
        self.batches = 0
        self._writers: dict[str, VideoWriter] = {}
        self._finished: list[str] = []

    # -- in the worker ------------------------------------------------------------

    def __call__(self, batch: TensorDictBase) -> None:
        """Folds one collected batch; TorchRL calls this in the worker."""
        state = funrec.fold(self.recorder, _steps(batch), self.state)
        if self._streams:
            state = self._stream(state)
        self.state = state
        self.batches += 1
        if self.directory is not None:
            self._checkpoint()

    @property
    def label(self) -> str:
        """The name this worker's files carry (see the class docstring)."""
        worker = self.worker if self.worker is not None else _torchrl_worker_index()
        if worker is not None:
            return f"worker{worker}"
        return f"{socket.gethostname()}-{os.getpid()}"

    def report(self, worker: int, finish: bool = False) -> WorkerState:
        """This worker's :class:`WorkerState`; ``finish`` closes its videos first.

        :func:`gather` calls it in every worker. After ``finish`` the next batch
        starts new files (``k`` + 1).
        """
        if finish:
            for writer in self._writers.values():
                writer.close()
            self._finished.extend(str(w.path) for w in self._writers.values() if w.frames)
            self._writers = {}
        files = (*self._finished, *(str(w.path) for w in self._writers.values() if w.frames))
        state = funrec.with_origin(self.state, self.label)
        return WorkerState(worker, self.label, state, self.batches, files)

    def _stream(self, state: Any) -> Any:
        """Writes the frames held by each ``frames()`` stream to its video."""
        if self._streams == (None,):
            return write_drained(state, self._writer("video"))
        return write_drained(state, {name: self._writer(name) for name in self._streams})

    def _writer(self, name: str) -> VideoWriter:
        writer = self._writers.get(name)
        if writer is None:
            k = sum(Path(f).name.startswith(f"{name}_{self.label}_") for f in self._finished)
            path = self.directory / f"{name}_{self.label}_{k}.mp4"
            writer = open_video(path, fps=self.fps, metadata={"stream": name, "worker": self.label})
            self._writers[name] = writer
        return writer

    def _checkpoint(self) -> None:
        """Saves the state atomically: a worker killed later leaves this behind."""
        report = self.report(-1)  # gather puts the index in when it reads a checkpoint
        path = self.directory / f"{self.label}{_STATE_SUFFIX}"
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_bytes(pickle.dumps(report))
        os.replace(temp, path)

    # -- pickling: TorchRL copies the hook into the workers ------------------------

    def __getstate__(self) -> dict[str, Any]:
        if self._writers:
            raise RecorderError(
                f"CollectorRecorder: cannot be copied while it writes {sorted(self._writers)}; "
                "hand it to the collector before collecting, and read it with gather()."
            )
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"CollectorRecorder(directory={self.directory}, batches={self.batches})"


def gather(
    collector: Any, *, finish: bool = True, timeout: float = 60.0
) -> Gathered:
    """Brings every worker's recording back, finishes its files, and merges the states.

    Each worker answers with its :class:`WorkerState` (through TorchRL's
    ``cascade_execute`` worker command). With ``finish``, each worker also
    closes its videos and dumps its env's transforms (TorchRL's
    ``Transform.dump``: a ``VideoRecorder`` built in ``create_env_fn``
    finishes its file). A worker that is dead, or silent for ``timeout``
    seconds, is reported in ``missing`` instead of waited for; a dead worker's
    last checkpoint, when its hook had a directory, stands in for its state
    (``recovered=True``).

    Call it after the collection loop and before ``collector.shutdown()``;
    a ``RayCollector`` shuts itself down when its iterator runs out, so give it
    a large ``total_frames`` and ``break``. In a ``MultiAsyncCollector`` the
    workers run ahead of the loop: see docs/workers.md for the rule.

    Args:
        collector: a ``MultiSyncCollector``, ``MultiAsyncCollector``,
            ``RayCollector``, ``Collector``, or an ``Evaluator(backend="process")``,
            whose ``post_collect_hook`` is a :class:`CollectorRecorder`.
        finish: close the videos (and dump env transforms); False reads the
            states only, leaving the files open.
        timeout: the most seconds to wait for the workers' answers.

    Returns:
        :class:`Gathered`: the merged state, each worker's state, the missing workers.

    Example:
        >>> for i, batch in enumerate(collector):  # doctest: +SKIP
        ...     if i == 10:
        ...         break
        >>> result = gather(collector)  # doctest: +SKIP
        >>> result.missing  # {} when every worker answered  # doctest: +SKIP
        >>> collector.shutdown()  # doctest: +SKIP
    """
    collector = _inner_collector(collector)
    hook = _local_hook(collector)
    args = lambda i: (i, finish)  # noqa: E731 - one call per worker index
    if hasattr(collector, "pipes"):
        answers, missing = _ask_processes(collector, "post_collect_hook.fn.report", args, timeout)
        if finish:
            _ask_processes(collector, "_dump_env_transform", lambda i: (), timeout)
    elif hasattr(collector, "remote_collectors"):
        answers, missing = _ask_ray(collector, "post_collect_hook.report", args, timeout)
        if finish:
            _ask_ray(collector, "_dump_env_transform", lambda i: (), timeout)
    else:
        answers, missing = {0: collector.post_collect_hook.report(*args(0))}, {}
        if finish:
            collector._dump_env_transform()
    for worker in list(missing):
        recovered = _recover(hook, worker)
        if recovered is not None:
            answers[worker] = recovered
            missing[worker] += f"; its state is its checkpoint after batch {recovered.batches}"
    workers = dict(sorted(answers.items()))
    states = [w.state for w in workers.values()]
    if hook is not None:
        states.insert(0, hook.recorder.init())  # the identity: no worker answered, no data
    merged = functools.reduce(funrec.merge, states) if states else None
    return Gathered(merged, workers, missing)


def _inner_collector(collector: Any) -> Any:
    """The collector holding the workers (an ``Evaluator`` keeps one inside)."""
    backend = getattr(collector, "_backend", None)
    if backend is not None and hasattr(backend, "_collector"):
        if backend._collector is None:
            raise RecorderError(
                "gather(evaluator): the Evaluator has not run yet, so it has no workers; "
                "call evaluator.evaluate() first."
            )
        return backend._collector
    return collector


def _local_hook(collector: Any) -> CollectorRecorder | None:
    hook = getattr(collector, "post_collect_hook", None)
    if hook is None and hasattr(collector, "remote_collectors"):
        return None  # one hook per Ray worker, given through collector_kwargs
    if not isinstance(hook, CollectorRecorder):
        raise RecorderError(
            f"gather(): the collector's post_collect_hook is {type(hook).__name__}, not a "
            "funrec_torchrl.CollectorRecorder; pass post_collect_hook=CollectorRecorder(...)."
        )
    return hook


def _ask_processes(
    collector: Any, method: str, args: Callable[[int], tuple], timeout: float
) -> tuple[dict[int, Any], dict[int, str]]:
    """Calls ``method`` in every live worker process, never waiting on a dead one.

    TorchRL's own ``map_fn`` stops every worker when one has died; this speaks
    its worker protocol (``cascade_execute``) to each pipe on its own instead.
    """
    answers: dict[int, Any] = {}
    missing: dict[int, str] = {}
    if getattr(collector, "closed", False) or not hasattr(collector, "procs"):
        for i in range(collector.num_workers):
            missing[i] = (
                f"worker {i}: the collector is shut down (by shutdown(), or by TorchRL after "
                "an error); gather before collector.shutdown()"
            )
        return answers, missing
    asked = []
    for i, (pipe, proc) in enumerate(zip(collector.pipes, collector.procs, strict=True)):
        dead = _dead(proc, i)
        if dead is None:
            try:
                pipe.send(((method, args(i), {}), "cascade_execute"))
                asked.append(i)
                continue
            except OSError as err:
                dead = f"worker {i}: its pipe is closed ({err})"
        missing[i] = dead
    deadline = time.monotonic() + timeout
    for i in asked:
        pipe, proc = collector.pipes[i], collector.procs[i]
        while i not in answers and i not in missing:
            left = deadline - time.monotonic()
            if pipe.poll(max(0.0, min(left, 0.2))):
                try:
                    result, msg = pipe.recv()
                except (EOFError, OSError):
                    proc.join(timeout=1.0)  # its end of the pipe closed: it is exiting
                    missing[i] = _dead(proc, i) or f"worker {i}: its pipe closed"
                    continue
                if msg != "cascade_execute":
                    missing[i] = f"worker {i}: answered {msg!r} to {method}, out of step"
                elif isinstance(result, Exception):
                    missing[i] = f"worker {i}: {method} raised {result!r}"
                else:
                    answers[i] = result
            elif _dead(proc, i) is not None:
                missing[i] = _dead(proc, i)
            elif left <= 0:
                missing[i] = (
                    f"worker {i}: no answer within {timeout} s (alive but busy or stuck); shut "
                    "the collector down, its pipe may still deliver the late answer"
                )
    return answers, missing


def _dead(proc: multiprocessing.process.BaseProcess, i: int) -> str | None:
    """Why worker ``i`` cannot answer, or None while it is alive."""
    try:
        if proc.is_alive():
            return None
        return f"worker {i} (pid {proc.pid}) is dead, exit code {proc.exitcode}"
    except ValueError:  # TorchRL closed it after finding another worker dead
        return f"worker {i} was stopped by TorchRL (a worker died and TorchRL ended the others)"


def _ask_ray(
    collector: Any, method: str, args: Callable[[int], tuple], timeout: float
) -> tuple[dict[int, Any], dict[int, str]]:
    """Calls ``method`` on every Ray collector actor, each with its own deadline."""
    import ray

    actors = collector.remote_collectors
    if not actors:
        raise RecorderError(
            "gather(): the RayCollector has no workers left: it shuts down when its iterator "
            "runs out (or on shutdown()). Gather inside the loop's lifetime: give it a large "
            "total_frames, break out of the loop, gather, then shut down."
        )
    refs = {i: actor.cascade_execute.remote(method, *args(i)) for i, actor in enumerate(actors)}
    deadline = time.monotonic() + timeout
    answers: dict[int, Any] = {}
    missing: dict[int, str] = {}
    for i, ref in refs.items():
        try:
            answers[i] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
        except ray.exceptions.GetTimeoutError:
            missing[i] = f"worker {i}: no answer within {timeout} s"
        except ray.exceptions.RayError as err:
            missing[i] = f"worker {i}: {type(err).__name__}: {str(err).splitlines()[0]}"
    return answers, missing


def _recover(hook: CollectorRecorder | None, worker: int) -> WorkerState | None:
    """The last checkpoint of a worker that did not answer, if its hook wrote one."""
    if hook is None or hook.directory is None:
        return None
    path = hook.directory / f"worker{worker}{_STATE_SUFFIX}"
    if not path.exists():
        return None
    report = pickle.loads(path.read_bytes())
    files = tuple(str(p) for p in sorted(hook.directory.glob(f"*_worker{worker}_*.mp4")))
    return report._replace(worker=worker, files=files, recovered=True)


def _steps(batch: TensorDictBase) -> tuple[TensorDictBase, ...]:
    """The time steps of a collector batch: along the dim named "time", else the last."""
    names = batch.names if batch.batch_dims else []
    dim = names.index("time") if "time" in names else batch.batch_dims - 1
    if dim < 0:
        raise RecorderError(
            "CollectorRecorder: got a TensorDict without batch dims; a collector batch has "
            "a time dim (batch size [T] or [*envs, T])."
        )
    return batch.unbind(dim)


def _frame_streams(state: Any) -> tuple[str | None, ...]:
    """The names of the ``frames()`` streams in a state (``(None,)`` for a lone one)."""
    if isinstance(state, funrec.NamedState):
        return tuple(name for name, sub in state.items() if _holds_frames(sub))
    return (None,) if _holds_frames(state) else ()


def _holds_frames(state: Any) -> bool:
    while isinstance(state, funrec.GateState):
        state = state.inner
    return isinstance(state, funrec.FramesState)


def _torchrl_worker_index() -> int | None:
    """The index TorchRL gave this worker process (MultiSync/MultiAsync), if any."""
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None) or {}
    index = kwargs.get("worker_idx")
    return index if isinstance(index, int) else None


def _check_new(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise RecorderError(
            f"CollectorRecorder(directory={str(directory)!r}): the directory is not empty; "
            "give each run a new directory so no earlier video or checkpoint is overwritten."
        )


class VideoLogger(CSVLogger):
    """A TorchRL logger whose videos are written by funrec (mp4 without torchcodec).

    Scalars and hyperparameters go to CSV files as with ``CSVLogger``; every
    ``log_video`` writes ``<log_dir>/<exp_name>/videos/<name>_<step>.mp4``
    through :class:`funrec.writers.VideoDirectory`. Host it in TorchRL's
    logger services so one writer process serves every worker:
    ``ProcessLogger(VideoLogger, exp_name=..., log_dir=...)`` or
    ``VideoLogger.as_service("ray", ...)``, and hand ``logger.client()`` to the
    workers (e.g. to a ``VideoRecorder`` built in ``create_env_fn``).

    Args:
        exp_name: the experiment name (a directory under ``log_dir``).
        log_dir: the root directory; ``"csv_logs"`` if None.
        fps: frames per second, unless a ``log_video`` call passes ``fps=``.
        **video_kwargs: defaults for :func:`funrec.writers.open_video`
            (``crf``, ``preset``, ``codec``).

    Example:
        >>> from torchrl.record.loggers import ProcessLogger
        >>> logger = ProcessLogger(VideoLogger, exp_name="run", log_dir="logs")  # doctest: +SKIP
        >>> client = logger.client()  # picklable: give it to the workers  # doctest: +SKIP
        >>> logger.shutdown()  # doctest: +SKIP
    """

    def __init__(
        self, exp_name: str, log_dir: str | None = None, fps: float = 30, **video_kwargs: Any
    ) -> None:
        super().__init__(exp_name, log_dir=log_dir, video_format="mp4", video_fps=fps)
        self.videos = VideoDirectory(self.experiment.log_dir, fps=fps, **video_kwargs)

    def log_video(
        self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any
    ) -> None:
        """Writes ``video`` (uint8 ``[T, C, H, W]`` or ``[N, T, C, H, W]``) to ``videos/``."""
        self.videos.log_video(name, video, step, **kwargs)

    def __repr__(self) -> str:
        return f"VideoLogger(exp_name={self.exp_name!r}, log_dir={self.experiment.log_dir!r})"
