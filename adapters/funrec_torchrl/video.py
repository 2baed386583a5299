"""``VideoRecorder``: TorchRL's video transform as a thin shell over ``funrec.frames``."""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Sequence
from copy import copy
from pathlib import Path
from typing import Any

import torch
import torchrl.record
from tensordict import NonTensorData, TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl._utils import _ends_with
from torchrl._utils import logger as torchrl_logger
from torchrl.envs.transforms import ObservationTransform
from torchrl.record.loggers import Logger

import funrec
from funrec import NamedState, RecorderError
from funrec.layout import LayoutError, detect
from funrec.rules import done_flags
from funrec.writers import VideoWriter, WriterError, check_fps, open_video
from funrec.writers.directory import from_csvlogger
from funrec_torchrl import loggers
from funrec_torchrl._env import (
    detached_copy,
    mark_reset,
    pick_env,
    render_fps,
    resets_all,
    resets_env,
    worker_index,
)

# The recorder streaming each mp4 (by the name its partial is opened under), so that
# two recorders never write the same files.
_STREAMING: weakref.WeakValueDictionary[Path, VideoRecorder] = weakref.WeakValueDictionary()


class VideoRecorder(torchrl.record.VideoRecorder):
    """Records the frames of an environment into videos; a drop-in for TorchRL's.

    A subclass of TorchRL's ``VideoRecorder``, so code that finds recorders by
    type (``env.apply(lambda m: isinstance(m, VideoRecorder) and m.dump())``)
    finds this one. Each frame a reset or a step produces is handed to a
    ``funrec.frames`` recorder (``state = recorder.step(state, td)``); skipping,
    bounding and counting happen there. ``dump()`` hands what is held to the
    logger (see :mod:`funrec_torchrl.loggers`: mp4 never needs torchcodec,
    TensorBoard never needs ``moviepy.editor``). With a CSVLogger whose
    ``video_format="mp4"`` (also behind a ``ProcessLogger``), frames are
    streamed to disk as they arrive and ``dump()`` finishes the file
    ``<log_dir>/<exp_name>/videos/<tag>_<step>.mp4``.

    Differences from TorchRL (see docs/migrating-from-torchrl.md): every frame is
    recorded by default (``skip=1``); each in_key makes its own video (tag
    suffixed by the key when there are several); ``fps`` defaults to the env's
    ``render_fps`` (a batched env's sub-envs') divided by ``skip``;
    ``make_grid=False`` on a batched env makes one video per sub-env (tag
    suffixed ``_env<i>``), which ``dump_on_done`` cuts at that sub-env's own
    episode end; a recorder inside a batched-env worker suffixes its videos
    ``_worker<i>``; a failed write keeps the frames for a retry.

    Args:
        logger: where ``dump()`` sends videos (a TorchRL logger, a logger
            service owner or client, or anything with TorchRL's
            ``log_video(name, video, step, **kwargs)``), or None to keep the
            frames for :meth:`videos` only (``dump()`` then discards them).
        tag: the video name; None passes ``name=None`` to ``log_video``
            (files funrec names itself are then called ``video``).
        in_keys: the keys holding frames; defaults to ``["pixels"]``.
        skip: record one frame in ``skip`` (the 1st, the ``skip+1``-th, ...); 1 by default.
        center_crop: the side of a square center crop (torchvision's rule,
            padding sides that are shorter) applied to every frame.
        make_grid: True tiles a batch of frames into one grid frame per step;
            False records one video per sub-env of a batched env, and reads a
            stack of frames without batch dims (``[N, C, H, W]``) as N
            consecutive frames. None (the default) is True with a parent env,
            False without one, as in TorchRL.
        out_keys: accepted for TorchRL compatibility; frames are never modified.
        fps: frames per second of the videos, kept in ``video_kwargs["fps"]``.
        max_frames: the most frames held per video at once (newer frames are
            dropped, and counted, until ``dump()``); unbounded by default.
        dump_on_done: dump whenever a step ends the episode, read from every
            done key of the parent env whose name ends in ``"done"`` (nested
            ones too): of every sub-env at once for a single or grid video, of
            each sub-env for per-env videos.
        **kwargs: passed on to ``logger.log_video``. For the mp4 CSVLogger,
            ``video_codec`` and ``options={"crf": ..., "preset": ...}`` reach the
            writer.

    Example:
        >>> from torchrl.envs import GymEnv
        >>> from torchrl.record.loggers import CSVLogger
        >>> from funrec_torchrl import VideoRecorder
        >>> logger = CSVLogger("exp", video_format="mp4")  # doctest: +SKIP
        >>> env = GymEnv("ALE/Pong-v5").append_transform(
        ...     VideoRecorder(logger, tag="pong"))  # doctest: +SKIP
        >>> env.rollout(10)  # doctest: +SKIP
        >>> env.transform.dump()  # csv_logs/exp/videos/pong_0.mp4, 11 frames  # doctest: +SKIP
    """

    def __init__(
        self,
        logger: Logger | None,
        tag: str | None,
        in_keys: Sequence[NestedKey] | None = None,
        skip: int | None = None,
        center_crop: int | None = None,
        make_grid: bool | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        fps: int | None = None,
        max_frames: int | None = None,
        dump_on_done: bool = False,
        **kwargs: Any,
    ) -> None:
        # Decided before a service owner is swapped for its client: the owner
        # knows which logger its service runs.
        mp4_dir = loggers.mp4_directory(logger)
        logger_fps = loggers.video_fps(logger) if mp4_dir is not None else None
        client = getattr(logger, "client", None)
        if callable(client):  # a TorchRL logger service owner
            logger = client()
        if in_keys is None:
            in_keys = ["pixels"]
        if out_keys is None:
            out_keys = copy(in_keys)
        # TorchRL's __init__ is left out: it needs torchvision for center_crop.
        ObservationTransform.__init__(self, in_keys=in_keys, out_keys=out_keys)
        self.logger = logger
        self.tag = tag
        self.skip = 1 if skip is None else skip
        self.center_crop = center_crop
        self.make_grid = make_grid
        self.max_frames = max_frames
        self.dump_on_done = dump_on_done
        self.video_kwargs = dict(kwargs)
        if fps is not None:
            self.video_kwargs["fps"] = fps
        self.iter = 0
        # Fail now on bad arguments rather than at the first frame.
        funrec.frames(skip=self.skip, max_frames=max_frames, crop=center_crop)
        if fps is not None:
            check_fps(fps, "VideoRecorder")
        self._mp4_dir = mp4_dir
        self._logger_fps = logger_fps
        self._streams = self._video_dir() is not None
        if self._streams:
            self._writer_settings()
        elif logger is not None:
            loggers.check_arguments(logger, self.video_kwargs)
        self._worker = worker_index()  # a recorder inside a batched env's worker
        self._start_recording()

    def _start_recording(self) -> None:
        """Sets the recording fields as before the first frame."""
        self._batch: tuple[int, ...] | None = None  # decided by the first TensorDict
        self._per_env = False  # one video per sub-env: decided with the batch
        self._stack_dims: int | None = None  # frames in a stack, for make_grid=False
        self._recorder: funrec.Recorder | None = None
        self._state: NamedState | None = None
        self._seen_at_dump = 0
        self._env_dumps: dict[str, int] = {}
        self._writers: dict[str, VideoWriter] = {}
        self._unwritten: dict[str, torch.Tensor] = {}  # taken by a writer that failed
        self._stream_failed: set[str] = set()

    def clone(self) -> VideoRecorder:
        """A recorder with the same arguments that holds no frame and writes no file.

        TorchRL clones the transforms before another one of a ``Compose`` to
        build that one's ``parent`` env (a ``StepCounter`` appended by a
        collector does); the clone must not copy the frames held, nor share
        the files being streamed.
        """
        clone = detached_copy(self)
        clone.__dict__.update(_streams=False, _obs=[])
        clone._start_recording()
        return clone

    @property
    def make_grid(self) -> bool:
        """Whether a batch of frames is tiled into one grid frame (see the class Args)."""
        if self._make_grid is None:
            return self.parent is not None
        return self._make_grid

    @make_grid.setter
    def make_grid(self, value: bool | None) -> None:
        self._make_grid = value

    # -- recording: the only thing the TorchRL hooks do ---------------------------

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        self._record(next_tensordict)
        return next_tensordict

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        self._record(mark_reset(tensordict, tensordict_reset))
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        next_tensordict = self._call(next_tensordict)
        if self.dump_on_done:
            self._dump_done(done_flags(next_tensordict, self._done_keys()))
        return next_tensordict

    def _done_keys(self) -> list[NestedKey] | None:
        """The parent env's done keys ending in ``"done"`` (TorchRL's rule), or None for all."""
        parent = self.parent
        keys = getattr(parent, "done_keys", None) if parent is not None else None
        return None if keys is None else [k for k in keys if _ends_with(k, "done")]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Records ``tensordict`` outside an env (replay buffers, datasets).

        Its batch dims are read as consecutive frames, unless ``make_grid=True``.
        """
        if not tensordict.batch_dims:  # one frame (or a stack): make_grid is read if needed
            self._record(tensordict)
            return tensordict
        grid = self.make_grid
        if grid:
            self._record(tensordict, grid)
        else:
            for td in tensordict.reshape(-1).unbind(0):
                self._record(td, grid)
        return tensordict

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        """Records one observation of the (single) in_key, as TorchRL's method does.

        Leading dims equal to the parent env's batch size are read as its
        sub-envs; a stack of frames without a parent is read as consecutive
        frames unless ``make_grid=True``.

        Args:
            observation: a frame or a stack of frames (any layout funrec reads).

        Returns:
            ``observation``, unchanged.
        """
        if len(self.in_keys) != 1:
            raise RecorderError(
                f"VideoRecorder._apply_transform records one key, but in_keys={self.in_keys}; "
                "pass a TensorDict holding every key to the transform instead."
            )
        value = observation.data if isinstance(observation, NonTensorData) else observation
        value = torch.as_tensor(value)
        batch = tuple(getattr(self.parent, "batch_size", ()) or ())
        if tuple(value.shape[: len(batch)]) != batch:
            batch = ()
        self._record(TensorDict({self.in_keys[0]: value}, batch_size=batch))
        return observation

    def _record(self, td: TensorDictBase, grid: bool | None = None) -> None:
        """Records one TensorDict; ``grid`` is ``self.make_grid`` when the caller knows it."""
        stacks = self._stack_dims != 0 and not td.batch_dims  # 0: single frames, decided
        if stacks and not (self.make_grid if grid is None else grid):
            stack = self._frame_stack(td)
            if stack is not None:
                for frame in stack.unbind(0):
                    self._record_one(frame)
                return
        self._record_one(td)

    def _frame_stack(self, td: TensorDictBase) -> TensorDictBase | None:
        """The frames of an unbatched TensorDict as a batch ``[N]``, or None for one frame.

        How many leading dims are a stack is decided on the first frame (from
        its layout) and kept, as the frame layout is.
        """
        if self._stack_dims is None:
            first = td.get(self.in_keys[0], None)
            try:
                self._stack_dims = len(detect(first).batch_shape)
            except (LayoutError, TypeError):  # the frames recorder reports it, with its context
                return None
        if not self._stack_dims:
            return None
        frames = {key: td.get(key) for key in self.in_keys}
        batch = next(iter(frames.values())).shape[: self._stack_dims]
        return TensorDict(frames, batch_size=batch).reshape(-1)

    def _record_one(self, td: TensorDictBase) -> None:
        if self._recorder is None:
            self._build(tuple(td.batch_size))
        # Straight into __dict__: nn.Module.__setattr__ costs more than a small frame's copy.
        self.__dict__["_state"] = self._recorder.step(self._state, td)
        if self._streams:
            self._stream()

    def _build(self, batch: tuple[int, ...]) -> None:
        """Builds the recorder: one ``frames`` stream per key (and per sub-env)."""
        self._batch = batch
        self._per_env = len(batch) > 0 and not self.make_grid
        self._recorder = self._make_recorder()
        self._state = self._recorder.init()

    def _make_recorder(self) -> funrec.Recorder:
        """One funrec recorder for all videos: ``named(<video name>=frames(...), ...)``.

        A grid video leaves out partial resets (the other tiles did not move); a
        per-env video takes its sub-env out of the batch and only its own resets.
        Frames are cropped before they are held.
        """
        recorders = {}
        for name, (key, env) in self._names().items():
            rec = funrec.frames(
                key, skip=self.skip, max_frames=self.max_frames, crop=self.center_crop
            )
            if self._per_env:
                rec = funrec.when(resets_env(env), funrec.map_td(pick_env(env), rec))
            elif self._batch:
                rec = funrec.when(resets_all, rec)
            recorders[name] = rec
        return funrec.named(**recorders)

    def _names(self) -> dict[str, tuple[NestedKey, int | None]]:
        """Video name -> (in_key, sub-env index or None), in a stable order."""
        envs = range(math.prod(self._batch)) if self._per_env else [None]
        base = self.tag or "video"
        names = {}
        for key in self.in_keys:
            for env in envs:
                parts = [base]
                if self._worker is not None:
                    parts.append(f"worker{self._worker}")
                if len(self.in_keys) > 1:
                    parts.append(key if isinstance(key, str) else "_".join(key))
                if env is not None:
                    parts.append(f"env{env}")
                names["_".join(parts)] = (key, env)
        return names

    def _check_batched_worker_compat(self) -> None:
        super()._check_batched_worker_compat()  # TorchRL's warning
        torchrl_logger.warning(
            "funrec_torchrl.VideoRecorder: each worker's recorder names its videos "
            "<tag>_worker<i>, so the workers' files do not overwrite each other."
        )

    # -- reading what is held -----------------------------------------------------

    @property
    def state(self) -> NamedState | None:
        """The funrec recorder state (None before the first frame): one entry per video."""
        return self._state

    @property
    def obs(self) -> list[torch.Tensor]:
        """The frames held, as TorchRL's ``obs``: a list of uint8 ``[3, H, W]``.

        Read from the recorder state (grids tiled, crops applied), videos in
        name order; ``dump()`` empties it, and so does assigning ``[]``. The list
        is the same object at every read and is refilled at each read: changing
        it does not change what is recorded. Frames already streamed to an mp4
        are not held.
        """
        view = self.__dict__.setdefault("_obs", [])
        view[:] = [frame for video in self.videos().values() for frame in video.unbind(0)]
        return view

    @obs.setter
    def obs(self, value: list[torch.Tensor]) -> None:
        if len(value):
            raise RecorderError(
                "VideoRecorder.obs is read from the recorder state; it can only be emptied "
                "(recorder.obs = []). Record frames through the env or the transform."
            )
        self._discard_held()

    @property
    def count(self) -> int:
        """Frames seen since the last ``dump()`` (recorded, skipped or dropped), as TorchRL's."""
        return self._seen() - self._seen_at_dump

    def _seen(self) -> int:
        return sum(c.seen for c in self.counts().values())

    def _discard_held(self) -> None:
        if self._state is not None:
            self.__dict__["_state"] = funrec.drain(self._state)[1]
        self.__dict__["_seen_at_dump"] = self._seen()

    def videos(self) -> dict[str, torch.Tensor]:
        """The frames held, per video name, as ``dump()`` would write them.

        Returns:
            A dict: video name -> uint8 ``[T, 3, H, W]`` (grids tiled, crops applied).
            Frames already streamed to an mp4 or dumped are not held any more.
        """
        if self._state is None:
            return {}
        return {
            name: _join(self._unwritten.get(name), funrec.clip(items))
            for name, items in self._held()
        }

    def counts(self) -> dict[str, funrec.Counts]:
        """What happened to every frame, per video name (seen, recorded, skipped, dropped)."""
        return {} if self._state is None else funrec.counts(self._state)

    def _held(self) -> list[tuple[str, Any]]:
        return [(name, funrec.drain(state)[0]) for name, state in self._state.items()]

    def to_animation(
        self,
        *,
        title: str | None = None,
        interval: int = 50,
        repeat_delay: int = 1000,
        clear: bool = False,
    ) -> Any:
        """The frames held as a matplotlib ``ArtistAnimation`` (notebooks, tutorials).

        Args:
            title: the figure's title.
            interval: milliseconds between frames.
            repeat_delay: milliseconds before the animation repeats.
            clear: drop the frames held afterwards (and reset :attr:`count`).

        Returns:
            A ``matplotlib.animation.ArtistAnimation``, one artist per frame of :attr:`obs`.

        Example:
            >>> rec = VideoRecorder(None, None)
            >>> _ = rec._apply_transform(torch.zeros(3, 8, 8, dtype=torch.uint8))
            >>> rec.to_animation(clear=True)  # doctest: +SKIP
        """
        frames = self.obs
        if not frames:
            raise RuntimeError(
                "VideoRecorder.to_animation(): no frame is held; record a rollout first (frames "
                "streamed to an mp4 file are not held)."
            )
        try:
            import matplotlib.pyplot as plt
            from matplotlib.animation import ArtistAnimation
        except ImportError as err:
            raise ImportError(
                "VideoRecorder.to_animation() needs matplotlib: pip install matplotlib."
            ) from err
        figure, axes = plt.subplots()
        axes.set_axis_off()
        if title is not None:
            axes.set_title(title)
        artists = [[axes.imshow(f.permute(1, 2, 0).numpy(), animated=True)] for f in frames]
        animation = ArtistAnimation(
            figure, artists, interval=interval, blit=True, repeat_delay=repeat_delay
        )
        if clear:
            self._discard_held()
            frames.clear()
        return animation

    # -- writing ------------------------------------------------------------------

    def dump(self, suffix: str | None = None, step: int | None = None) -> None:
        """Writes every video held and empties the recorder, as TorchRL's ``dump``.

        Hands ``name=<tag>[_<suffix>]``, ``video=uint8 [1, T, 3, H, W]`` and
        ``step`` to the logger (:func:`funrec_torchrl.loggers.log_video`), or
        finishes the streamed mp4 for an mp4 CSVLogger. A video with no frames
        is not written; ``dump()`` with nothing recorded is a no-op (besides
        advancing the step counter, as in TorchRL). If writing fails, the
        exception propagates and the frames stay held: call ``dump`` again to
        retry.

        Args:
            suffix: appended to the tag as ``<tag>_<suffix>``.
            step: the step to log the videos at; defaults to the number of
                ``dump()`` calls so far (per-env videos count their own dumps).
        """
        if self._state is not None:
            for name in self._names():
                self._dump_video(name, suffix, step)
        self.iter += 1
        self.__dict__["_seen_at_dump"] = self._seen()

    def _dump_done(self, done: torch.Tensor) -> None:
        if self._per_env:
            flat = done.reshape(-1)
            for name, (_, env) in self._names().items():
                if bool(flat[env]):
                    self._dump_video(name, None, None)
        elif bool(done.all()):
            self.dump()

    def _dump_video(self, name: str, suffix: str | None, step: int | None) -> None:
        per_env = self._names()[name][1] is not None
        if step is None:
            step = self._env_dumps.get(name, 0) if per_env else self.iter
        title = name if suffix is None else f"{name}_{suffix}"
        directory = self._video_dir()
        if directory is not None:
            wrote = self._finish_mp4(name, directory / f"{title}_{step}.mp4")
        else:
            items, emptied = funrec.drain(self._state, name=name)
            wrote = bool(items)
            if wrote and self.logger is not None:
                # TorchRL passes the tag as it is, None included.
                log_name = None if self.tag is None and title == "video" else title
                kwargs = {k: v for k, v in self.video_kwargs.items() if k != "fps"}
                loggers.log_video(
                    self.logger, log_name, funrec.clip(items)[None], step, self._fps(), **kwargs
                )
            self._state = emptied
        if wrote and per_env:
            self._env_dumps[name] = self._env_dumps.get(name, 0) + 1

    def _video_dir(self) -> Path | None:
        """Where mp4 files are streamed (see :func:`funrec_torchrl.loggers.mp4_directory`)."""
        return self._mp4_dir

    def _fps(self, default: float | None = None) -> float | None:
        if "fps" in self.video_kwargs:
            return self.video_kwargs["fps"]
        fps = render_fps(self.parent)
        return fps / self.skip if fps is not None else default

    def _writer_settings(self) -> dict[str, Any]:
        unknown = sorted(set(self.video_kwargs) - {"fps", "video_codec", "options"})
        try:
            if unknown:
                raise ValueError(f"{unknown} cannot be passed to funrec's mp4 writer")
            settings = from_csvlogger(self.video_kwargs, "VideoRecorder")
        except ValueError as err:
            raise RecorderError(
                f"VideoRecorder: {err} (CSVLogger with video_format='mp4'); it takes fps=, "
                "video_codec= and options={'crf': ..., 'preset': ..., 'threads': ...}."
            ) from None
        settings.pop("fps", None)
        return settings

    def _stream(self) -> None:
        """Writes every held frame to its video's open mp4; keeps them on failure."""
        for name, items in self._held():
            if not len(items) or name in self._stream_failed:
                continue
            try:
                self._write_held(name, self._writers.get(name) or self._open(name))
            except RecorderError:
                raise
            except (WriterError, ValueError) as err:
                self._stream_failed.add(name)
                warnings.warn(
                    f"VideoRecorder: streaming video {name!r} failed ({err}); its frames are now "
                    "held in memory and dump() will write them (those already in the partial "
                    "file stay there).",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def _open(self, name: str) -> VideoWriter:
        """Opens the streamed mp4 of ``name``: a partial file until dump() names it."""
        base = self._base(name)
        other = _STREAMING.get(base)
        if other is not None and other is not self and name in other._writers:
            raise RecorderError(
                f"VideoRecorder(tag={self.tag!r}): another VideoRecorder is streaming video "
                f"{name!r} to {str(base.parent)!r} already; both would dump to the same files "
                f"{name}_<step>.mp4. Give each recorder its own tag (or logger)."
            )
        key, env = self._names()[name]
        metadata = {"key": key if isinstance(key, str) else list(key), "skip": self.skip}
        if env is not None:
            metadata["env"] = env
        writer = open_video(
            base, fps=self._fps(self._logger_fps), metadata=metadata, **self._writer_settings()
        )
        self._writers[name] = writer
        _STREAMING[base] = self
        return writer

    def _write_held(self, name: str, writer: VideoWriter) -> None:
        """Moves the frames held for ``name`` into ``writer``: all of them, or none on error."""
        items, emptied = funrec.drain(self._state, name=name)
        frames = _join(self._unwritten.get(name), funrec.clip(items))
        if not len(frames):
            return
        try:
            writer.write(frames)
        except WriterError as err:
            self._drop_writer(name)
            if err.unwritten is not None:  # taken earlier, not in the file: held again, first
                previous = self._unwritten.get(name)
                self._unwritten[name] = (
                    err.unwritten if previous is None else torch.cat([err.unwritten, previous])
                )
            raise
        self._state = emptied
        self._unwritten.pop(name, None)

    def _finish_mp4(self, name: str, final: Path) -> bool:
        """Writes what is held, finishes the mp4 and moves it to ``final``."""
        writer = self._writers.get(name)
        if writer is None:
            if self._unwritten.get(name) is None and not funrec.drain(self._state, name=name)[0]:
                return False
            writer = self._open(name)
        try:
            self._write_held(name, writer)
            writer.metadata["counts"] = funrec.counts(self._state[name])._asdict()
            try:
                writer.close(path=final)
            except WriterError as err:  # the frames it took but could not write: held again
                if err.unwritten is not None:
                    self._unwritten[name] = err.unwritten
                raise
        finally:
            self._drop_writer(name)
        self._stream_failed.discard(name)
        return True

    def _drop_writer(self, name: str) -> None:
        if self._writers.pop(name, None) is not None and _STREAMING.get(self._base(name)) is self:
            del _STREAMING[self._base(name)]

    def _base(self, name: str) -> Path:
        """The name a streamed video is opened under (its partial is named after it)."""
        return (self._video_dir() / f"{name}.mp4").absolute()

    # -- pickling: the recorder is rebuilt from the arguments, the state travels --

    def __getstate__(self) -> dict[str, Any]:
        if self._writers:
            raise RecorderError(
                f"VideoRecorder: cannot pickle while streaming to {sorted(self._writers)}; "
                "call dump() first (or pickle the transform before the rollout)."
            )
        state = super().__getstate__()
        state["_recorder"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if self._batch is not None:
            self._recorder = self._make_recorder()

    def close(self) -> None:
        """Keeps streamed videos open: ``dump()`` after ``env.close()`` writes them, as TorchRL's.

        A video never dumped stays in its partial mp4 (``funrec.writers.partials``),
        which ffmpeg completes when Python exits.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tag={self.tag!r}, in_keys={self.in_keys}, skip={self.skip})"


def _join(first: torch.Tensor | None, second: torch.Tensor) -> torch.Tensor:
    """Frames ``first`` (or None) then ``second`` (perhaps empty)."""
    if first is None or not len(second):
        return second if first is None else first
    return torch.cat([first, second])
