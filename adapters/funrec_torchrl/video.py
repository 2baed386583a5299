"""``VideoRecorder``: TorchRL's video transform as a thin shell over ``funrec.frames``."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from copy import copy
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.envs.transforms import ObservationTransform
from torchrl.record.loggers import Logger
from torchrl.record.loggers.csv import CSVLogger

import funrec
from funrec import NamedState, RecorderError
from funrec.writers import WriterError, open_video, sidecar_path
from funrec_torchrl._env import (
    mark_reset,
    pick_env,
    render_fps,
    resets_all,
    resets_env,
)

_WRITER_OPTIONS = {"crf", "preset"}


class VideoRecorder(ObservationTransform):
    """Records the frames of an environment into videos; a drop-in for TorchRL's.

    Each frame a reset or a step produces is handed to a ``funrec.frames``
    recorder (``state = recorder.step(state, td)``); skipping, bounding and
    counting happen there. ``dump()`` writes what is held through the logger
    like TorchRL does. With a :class:`~torchrl.record.loggers.CSVLogger` whose
    ``video_format="mp4"``, frames are instead streamed to disk as they arrive
    through funrec's mp4 writer (no torchcodec) and ``dump()`` finishes the file
    ``<log_dir>/<exp_name>/videos/<tag>_<step>.mp4``.

    Differences from TorchRL (see docs/migrating-from-torchrl.md): every frame is
    recorded by default (``skip=1``); each in_key makes its own video (tag
    suffixed by the key when there are several); ``fps`` defaults to the env's
    ``render_fps`` divided by ``skip``; ``make_grid=False`` on a batched env
    makes one video per sub-env (tag suffixed ``_env<i>``), which
    ``dump_on_done`` cuts at that sub-env's own episode end; a failed write keeps
    the frames for a retry.

    Args:
        logger: where ``dump()`` sends videos (anything with TorchRL's
            ``log_video(name, video, step, **kwargs)``), or None to keep the
            frames for :meth:`videos` only (``dump()`` then discards them).
        tag: the video name; None reads as ``"video"``.
        in_keys: the keys holding frames; defaults to ``["pixels"]``.
        skip: record one frame in ``skip`` (the 1st, the ``skip+1``-th, ...); 1 by default.
        center_crop: the side of a square center crop applied to every frame.
        make_grid: for a batched env, True (the default) tiles the sub-envs into
            one grid video, False records one video per sub-env. Without a parent
            env (``forward``), a batch is read as consecutive frames unless True.
        out_keys: accepted for TorchRL compatibility; frames are never modified.
        fps: frames per second of the videos.
        max_frames: the most frames held per video at once (newer frames are
            dropped, and counted, until ``dump()``); unbounded by default.
        dump_on_done: dump whenever a step ends the episode: of every sub-env at
            once for a single or grid video, of each sub-env for per-env videos.
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
        client = getattr(logger, "client", None)
        if callable(client):  # a TorchRL logger service
            logger = client()
        if in_keys is None:
            in_keys = ["pixels"]
        if out_keys is None:
            out_keys = copy(in_keys)
        super().__init__(in_keys=in_keys, out_keys=out_keys)
        self.logger = logger
        self.tag = tag
        self.skip = 1 if skip is None else skip
        self.center_crop = center_crop
        self.make_grid = make_grid
        self.fps = fps
        self.max_frames = max_frames
        self.dump_on_done = dump_on_done
        self.video_kwargs = dict(kwargs)
        self.iter = 0
        # Fail now on bad arguments rather than at the first frame.
        funrec.frames(skip=self.skip, max_frames=max_frames, crop=center_crop)
        self._streams = self._video_dir() is not None
        if self._streams:
            self._writer_settings()
        self._batch: tuple[int, ...] | None = None  # decided by the first TensorDict
        self._recorder: funrec.Recorder | None = None
        self._state: NamedState | None = None
        self._env_dumps: dict[str, int] = {}
        self._writers: dict[str, Any] = {}
        self._stream_failed: set[str] = set()

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
            done = next_tensordict.get("done", None)
            if done is not None:
                self._dump_done(done.reshape(*next_tensordict.batch_size, -1).any(-1))
        return next_tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Records ``tensordict`` outside an env (replay buffers, datasets).

        Its batch dims are read as consecutive frames, unless ``make_grid=True``.
        """
        if self.make_grid or not tensordict.batch_dims:
            self._record(tensordict)
        else:
            for td in tensordict.reshape(-1).unbind(0):
                self._record(td)
        return tensordict

    def _record(self, td: TensorDictBase) -> None:
        if self._recorder is None:
            self._build(tuple(td.batch_size))
        # Straight into __dict__: nn.Module.__setattr__ costs more than a small frame's copy.
        self.__dict__["_state"] = self._recorder.step(self._state, td)
        if self._streams:
            self._stream()

    def _build(self, batch: tuple[int, ...]) -> None:
        """Builds the recorder: one ``frames`` stream per key (and per sub-env)."""
        self._batch = batch
        self._recorder = self._make_recorder()
        self._state = self._recorder.init()

    def _make_recorder(self) -> funrec.Recorder:
        """One funrec recorder for all videos: ``named(<video name>=frames(...), ...)``.

        A grid video leaves out partial resets (the other tiles did not move); a
        per-env video takes its sub-env out of the batch and only its own resets.
        Frames are cropped before they are held.
        """
        batched = bool(self._batch)
        per_env = batched and self.make_grid is False
        recorders = {}
        for name, (key, env) in self._names().items():
            rec = funrec.frames(
                key, skip=self.skip, max_frames=self.max_frames, crop=self.center_crop
            )
            if per_env:
                rec = funrec.when(resets_env(env), funrec.map_td(pick_env(env), rec))
            elif batched:
                rec = funrec.when(resets_all, rec)
            recorders[name] = rec
        return funrec.named(**recorders)

    def _names(self) -> dict[str, tuple[NestedKey, int | None]]:
        """Video name -> (in_key, sub-env index or None), in a stable order."""
        per_env = bool(self._batch) and self.make_grid is False
        envs = range(math.prod(self._batch)) if per_env else [None]
        base = self.tag or "video"
        names = {}
        for key in self.in_keys:
            for env in envs:
                parts = [base]
                if len(self.in_keys) > 1:
                    parts.append(key if isinstance(key, str) else "_".join(key))
                if env is not None:
                    parts.append(f"env{env}")
                names["_".join(parts)] = (key, env)
        return names

    # -- reading what is held -----------------------------------------------------

    @property
    def state(self) -> NamedState | None:
        """The funrec recorder state (None before the first frame): one entry per video."""
        return self._state

    def videos(self) -> dict[str, torch.Tensor]:
        """The frames held, per video name, as ``dump()`` would write them.

        Returns:
            A dict: video name -> uint8 ``[T, 3, H, W]`` (grids tiled, crops applied).
            Frames already streamed to an mp4 or dumped are not held any more.
        """
        if self._state is None:
            return {}
        return {name: funrec.clip(items) for name, items in self._held()}

    def counts(self) -> dict[str, funrec.Counts]:
        """What happened to every frame, per video name (seen, recorded, skipped, dropped)."""
        return {} if self._state is None else funrec.counts(self._state)

    def _held(self) -> list[tuple[str, Any]]:
        return [(name, funrec.drain(state)[0]) for name, state in self._state.items()]

    # -- writing ------------------------------------------------------------------

    def dump(self, suffix: str | None = None, step: int | None = None) -> None:
        """Writes every video held and empties the recorder, as TorchRL's ``dump``.

        Calls ``logger.log_video(name=<tag>[_<suffix>], video=uint8 [1, T, 3, H, W],
        step=..., **kwargs)``, or finishes the streamed mp4 for an mp4 CSVLogger.
        A video with no frames is not written; ``dump()`` with nothing recorded is
        a no-op (besides advancing the step counter, as in TorchRL). If writing
        fails, the exception propagates and the frames stay held: call ``dump``
        again to retry.

        Args:
            suffix: appended to the tag as ``<tag>_<suffix>``.
            step: the step to log the videos at; defaults to the number of
                ``dump()`` calls so far (per-env videos count their own dumps).
        """
        if self._state is not None:
            for name in self._names():
                self._dump_video(name, suffix, step)
        self.iter += 1

    def _dump_done(self, done: torch.Tensor) -> None:
        if self._batch and self.make_grid is False:
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
                video = funrec.clip(items)[None]
                kwargs = dict(self.video_kwargs)
                fps = self._fps(None)
                if fps is not None:
                    kwargs["fps"] = fps
                self.logger.log_video(name=title, video=video, step=step, **kwargs)
            self._state = emptied
        if wrote and per_env:
            self._env_dumps[name] = self._env_dumps.get(name, 0) + 1

    def _video_dir(self) -> Path | None:
        """``<log_dir>/<exp_name>/videos`` for an mp4 CSVLogger, else None."""
        logger = self.logger
        if isinstance(logger, CSVLogger) and logger.video_format == "mp4":
            return Path(logger.experiment.log_dir) / "videos"
        return None

    def _fps(self, default: float | None) -> float | None:
        if self.fps is not None:
            return self.fps
        fps = render_fps(self.parent)
        return fps / self.skip if fps is not None else default

    def _writer_settings(self) -> dict[str, Any]:
        kwargs = dict(self.video_kwargs)
        settings = {}
        if "video_codec" in kwargs:
            settings["codec"] = kwargs.pop("video_codec")
        options = dict(kwargs.pop("options", None) or {})
        unknown = sorted(set(kwargs) - {"fps"}) + sorted(set(options) - _WRITER_OPTIONS)
        if unknown:
            raise RecorderError(
                f"VideoRecorder: {unknown} cannot be passed to funrec's mp4 writer (CSVLogger with "
                "video_format='mp4'); it takes fps=, video_codec= and options={'crf': ..., "
                "'preset': ...}."
            )
        settings.update({k: (int(v) if k == "crf" else v) for k, v in options.items()})
        return settings

    def _stream(self) -> None:
        """Writes every held frame to its video's open mp4; keeps them on failure."""
        for name, items in self._held():
            if not len(items) or name in self._stream_failed:
                continue
            try:
                self._write_held(name)
            except (OSError, WriterError, ValueError) as err:
                self._stream_failed.add(name)
                warnings.warn(
                    f"VideoRecorder: streaming video {name!r} failed ({err}); its frames are now "
                    "held in memory and dump() will retry writing them.",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def _write_held(self, name: str) -> None:
        """Moves the frames held for ``name`` into its partial mp4; on error keeps them."""
        items, emptied = funrec.drain(self._state, name=name)
        if not items:
            return
        writer = self._writers.get(name)
        if writer is None:
            path = self._video_dir() / f"{name}.partial.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            # ffmpeg reports a path it cannot create only when it exits; find out now,
            # while the frames are still held.
            with open(path, "wb"):
                pass
            key, env = self._names()[name]
            metadata = {"key": key if isinstance(key, str) else list(key), "skip": self.skip}
            if env is not None:
                metadata["env"] = env
            writer = open_video(
                path,
                fps=self._fps(self.logger.video_fps),
                metadata=metadata,
                **self._writer_settings(),
            )
        try:
            writer.write(funrec.clip(items))
        except BaseException:
            self._writers.pop(name, None)
            if writer.frames:  # the partial file keeps what was written before: move it aside
                _rename(writer.path, writer.path.with_name(f"{name}.failed.mp4"))
            raise
        self._writers[name] = writer
        self._state = emptied

    def _finish_mp4(self, name: str, final: Path) -> bool:
        """Writes what is held, closes the partial mp4 and renames it to ``final``."""
        self._write_held(name)
        self._stream_failed.discard(name)
        writer = self._writers.pop(name, None)
        if writer is None:
            return False
        writer.metadata["counts"] = funrec.counts(self._state[name])._asdict()
        try:
            writer.close()
        except BaseException:  # the file keeps a playable prefix: move it aside
            _rename(writer.path, writer.path.with_name(f"{name}.failed.mp4"))
            raise
        _rename(writer.path, final)
        return True

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
        """Stops the writers of unfinished videos (their partial mp4 files stay)."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tag={self.tag!r}, in_keys={self.in_keys}, skip={self.skip})"


def _rename(source: Path, target: Path) -> None:
    """Renames a video and its JSON sidecar."""
    os.replace(source, target)
    if sidecar_path(source).exists():
        os.replace(sidecar_path(source), sidecar_path(target))
