"""A streaming trajectory store: TensorDict steps to a memory-mapped directory.

:class:`TrajectoryWriter` appends steps to one file per leaf, laid out as a
tensordict memmap directory (``<path>/next/reward.memmap``...). Files grow in
preallocated chunks whose size doubles (64 steps, 128, ... up to 64 MiB a chunk),
so appending costs no copy and a full disk is reported when a chunk is
allocated, before the step is written. The writer commits every ``commit_steps``
steps, and at the latest ``commit_seconds`` after a step (and on
``flush()``/``close()``): it flushes the files and rewrites ``<path>/index.json``
atomically with the number of valid steps. A process killed at any moment leaves
every committed step loadable: a crash loses at most the last ``commit_steps - 1``
steps, none older than ``commit_seconds``. ``close()`` trims the files to the
steps written and adds tensordict's ``meta.json`` files, so a closed store also
opens with ``TensorDict.load_memmap``.

Episodes: each step gets an int64 ``"episode"`` entry (one id per batch entry),
starting a new id after a step whose done key is set, so episode ``i`` is
``td[td["episode"] == i]`` (:func:`episode`), and TorchRL's ``SliceSampler``
can read the store as it is.

Image keys named in ``video_keys`` are stored as mp4 instead (one fragmented mp4
per batch entry, frame ``t`` for step ``t``), which is lossy and many times
smaller; :func:`load` decodes them. After a crash, ffmpeg may trail the
commits (by up to a second of frames): ``load`` then returns the steps whose
frames reached the disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tensordict import MemoryMappedTensor, NonTensorData, NonTensorStack, TensorDict, TensorDictBase

from funrec.layout import LayoutError, detect
from funrec.rules import done_flags
from funrec.writers._files import WriterError, check_fps, funrec_version, write_json
from funrec.writers.video import VideoWriter, open_video, read_video

__all__ = ["TrajectoryWriter", "episode", "load"]

_INDEX = "index.json"
_RESERVE = ".reserve"  # room kept free for the last commit on a full disk
_RESERVE_BYTES = 1 << 16
_NestedKey = str | tuple[str, ...]


class TrajectoryWriter:
    """Streams TensorDict steps to a trajectory store directory.

    Args:
      path: a directory that does not exist yet (or is empty).
      done_key: the key that ends an episode (``[*batch]`` or ``[*batch, 1]``);
        None when the steps have no episodes (one episode per batch entry).
      episode_key: where the episode id of each step is stored; None to store none.
      first_chunk: steps in the first preallocated chunk; each next chunk doubles.
      max_chunk_bytes: upper bound on a chunk's size.
      commit_steps: commit at least every this many steps.
      commit_seconds: commit at the latest this long after a step was written.
        Together they bound what a crash can lose.
      video_keys: uint8 image keys (``[*batch, H, W, 3]`` or ``[*batch, 3, H, W]``)
        stored as mp4, one video per batch entry, frame ``t`` for step ``t``:
        lossy (see docs/writing.md for the bound) and many times smaller.
      video_layout: ``"HWC"`` or ``"CHW"``, for video images whose shape reads
        both ways (e.g. 3x3x3); by default read from the shape (``funrec.layout``).
      fps: frame rate of those videos (for playing them; steps map to frames 1:1).

    Attributes:
      path: the store directory.
      steps: the number of steps written.

    Example:
      >>> import torch, tempfile
      >>> from tensordict import TensorDict
      >>> from funrec.writers import TrajectoryWriter, load
      >>> path = tempfile.mkdtemp() + "/traj"
      >>> with TrajectoryWriter(path) as w:
      ...     for t in range(5):
      ...         w.append(TensorDict({"obs": torch.full((2,), t),
      ...                              "next": {"done": torch.tensor([t == 2])}}))
      >>> td = load(path)
      >>> td["obs"][:, 0].tolist(), td["episode"].tolist()
      ([0, 1, 2, 3, 4], [0, 0, 0, 1, 1])
    """

    def __init__(
        self,
        path: str | Path,
        *,
        done_key: _NestedKey | None = ("next", "done"),
        episode_key: str | None = "episode",
        first_chunk: int = 64,
        max_chunk_bytes: int = 64 << 20,
        commit_steps: int = 64,
        commit_seconds: float = 1.0,
        video_keys: Sequence[_NestedKey] = (),
        video_layout: str | None = None,
        fps: float = 30,
    ) -> None:
        self.path = Path(path)
        where = f"TrajectoryWriter({str(self.path)!r})"
        for name, value in [
            ("first_chunk", first_chunk),
            ("max_chunk_bytes", max_chunk_bytes),
            ("commit_steps", commit_steps),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: {name}={value!r}; pass a positive int.")
        if not (isinstance(commit_seconds, int | float) and 0 < commit_seconds < float("inf")):
            raise ValueError(
                f"{where}: commit_seconds={commit_seconds!r}; pass a positive number of seconds."
            )
        if video_layout not in (None, "HWC", "CHW"):
            raise ValueError(f"{where}: video_layout={video_layout!r}; pass 'HWC', 'CHW' or None.")
        self._fps = check_fps(fps, where)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise FileExistsError(
                f"TrajectoryWriter: {str(self.path)!r} already exists; a store is never written "
                "over another: pass a new path or remove the old store."
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WriterError(
                f"TrajectoryWriter: cannot create {str(self.path)!r} ({err.strerror or err}); "
                "choose a writable directory."
            ) from err
        self.done_key = done_key
        self.episode_key = episode_key
        self.steps = 0
        self._first_chunk = first_chunk
        self._max_chunk_bytes = max_chunk_bytes
        self._commit_steps = commit_steps
        self._commit_seconds = float(commit_seconds)
        self._committed = 0
        self._timer: threading.Timer | None = None
        self._lock = threading.RLock()  # the commit timer's thread against the caller's
        self._capacity = 0
        self._chunks = 0
        self._batch: torch.Size | None = None
        self._leaves: dict[tuple[str, ...], tuple[torch.dtype, torch.Size]] = {}
        self._files: dict[tuple[str, ...], Any] = {}
        self._video_keys = [_as_tuple(key) for key in video_keys]
        self._video_layout = video_layout
        self._videos: dict[tuple[str, ...], tuple[str, list[VideoWriter]]] = {}
        self._episode: torch.Tensor | None = None
        self._next_episode = 0
        self._closed = False
        self._reserve()
        self._commit(complete=False)

    def append(self, td: TensorDictBase) -> None:
        """Writes one step (a TensorDict of batch size ``[*batch]``).

        Raises:
          ValueError: a key, shape or dtype differs from the first step; nothing
            of this step is written.
          WriterError: the disk is full; nothing of this step is written and every
            step before it is committed: ``close()`` and write the rest elsewhere.
        """
        self._write(td, stacked=False)

    def extend(self, td: TensorDictBase) -> None:
        """Writes ``T`` steps at once (a TensorDict of batch size ``[T, *batch]``).

        All or nothing: the chunks needed are allocated before anything is written.
        """
        if isinstance(td, TensorDictBase) and not td.batch_dims:
            raise ValueError(
                f"{str(self.path)!r}: extend() takes steps stacked along a first dim [T, *batch], "
                "got batch size (); use append() for one step."
            )
        self._write(td, stacked=True)

    def _write(self, td: TensorDictBase, *, stacked: bool) -> None:
        with self._lock:
            if self._closed:
                raise WriterError(f"{str(self.path)!r}: write on a closed TrajectoryWriter.")
            rows = self._rows(td, stacked)
            count = td.batch_size[0] if stacked else 1
            if count == 0:
                return
            episodes, state = self._episodes(td, count)
            if self.episode_key is not None:
                rows[(self.episode_key,)] = episodes
            while self.steps + count > self._capacity:
                self._grow()
            try:
                for key, (order, writers) in self._videos.items():
                    value = rows.pop(key)
                    frames = value.reshape(count, -1, *value.shape[-3:])  # [T, entries, *image]
                    if order == "HWC":
                        frames = frames.permute(0, 1, 4, 2, 3)
                    for entry, writer in enumerate(writers):
                        writer.write(frames[:, entry])
                for key, value in rows.items():
                    self._files[key].write(value.reshape(-1).view(torch.uint8).numpy().data)
            except (OSError, WriterError) as err:
                self._abandon()
                cause = getattr(err, "strerror", None) or err
                raise WriterError(
                    f"{str(self.path)!r}: writing failed ({cause}); "
                    f"the store keeps the {_committed(self.path)} steps committed before and "
                    "loads with those; write the remaining steps to another store.",
                    path=self.path,
                    written=_committed(self.path),
                ) from err
            self.steps += count
            self._episode, self._next_episode = state
            if self.steps - self._committed >= self._commit_steps:
                self._commit(complete=False)
            elif self._timer is None:
                self._timer = threading.Timer(self._commit_seconds, self._commit_later)
                self._timer.daemon = True
                self._timer.start()

    def _commit_later(self) -> None:
        """The commit timer: commits the steps written since the last commit."""
        with self._lock:
            self._timer = None
            if not self._closed and self.steps > self._committed:
                with contextlib.suppress(WriterError):  # the next write or close reports it
                    self._commit(complete=False)

    def _abandon(self) -> None:
        """After a failed write: release files and ffmpeg, keep the last commit as the truth."""
        self._closed = True
        self._cancel_timer()
        for _, writers in self._videos.values():
            for writer in writers:
                with contextlib.suppress(WriterError):
                    writer.close()
        for file in self._files.values():
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(WriterError):  # what is written, and where the videos are
            self._commit(complete=False)

    def flush(self) -> None:
        """Commits now: every step written so far survives a crash."""
        with self._lock:
            if not self._closed:
                self._commit(complete=False)

    def close(self) -> None:
        """Commits, trims the files to the steps written and marks the store complete."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cancel_timer()
            failed = None
            for _, writers in self._videos.values():
                for writer in writers:
                    try:
                        writer.close()
                    except WriterError as err:  # finish the rest; the store loads what decodes
                        failed = failed or err
            # Trim before committing: on a full disk this frees the preallocated room first.
            for key, file in self._files.items():
                file.close()
                os.truncate(self._file(key), self.steps * self._row_bytes(key))
            (self.path / _RESERVE).unlink(missing_ok=True)
            self._write_tensordict_meta()
            self._commit(complete=failed is None)
            if failed is not None:
                raise failed

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TrajectoryWriter({str(self.path)!r}, steps={self.steps})"

    # -- checking a step

    def _rows(self, td: TensorDictBase, stacked: bool) -> dict[tuple[str, ...], torch.Tensor]:
        """Every leaf as ``[count, *batch, ...]``, checked against the first step."""
        if not isinstance(td, TensorDictBase):
            raise TypeError(
                f"{str(self.path)!r}: expected a TensorDict, got {type(td).__name__}; "
                "wrap dicts with tensordict.TensorDict(d, batch_size=[...])."
            )
        batch = td.batch_size[1:] if stacked else td.batch_size
        rows: dict[tuple[str, ...], torch.Tensor] = {}
        for key, value in td.items(include_nested=True, leaves_only=True, is_leaf=_is_leaf):
            key = key if isinstance(key, tuple) else (key,)
            if not isinstance(value, torch.Tensor):
                raise ValueError(
                    f"{str(self.path)!r}: key {key} holds {type(value).__name__}, not a tensor; "
                    "the store keeps tensors only: drop it with td.exclude(key) or "
                    "funrec.select(...)."
                )
            value = value.detach().cpu().contiguous()
            rows[key] = value if stacked else value.unsqueeze(0)
        if self.episode_key is not None and (self.episode_key,) in rows:
            raise ValueError(
                f"{str(self.path)!r}: the steps already have a key {self.episode_key!r}; pass "
                "episode_key=None to keep yours, or another name for the episode ids."
            )
        if self._batch is None:
            self._start(batch, rows)
        assert self._batch is not None
        if batch != self._batch or rows.keys() != self._user_keys():
            raise ValueError(
                f"{str(self.path)!r}: this step has batch size {tuple(batch)} and keys "
                f"{sorted(rows)}, the store has {tuple(self._batch)} and "
                f"{sorted(self._user_keys())}; every step needs the first step's keys and "
                "batch size: write these steps to another store, or select/rename keys first."
            )
        for key, value in rows.items():
            dtype, shape = self._leaves[key]
            if value.dtype != dtype or value.shape[1:] != shape:
                raise ValueError(
                    f"{str(self.path)!r}: key {key} has shape {tuple(value.shape[1:])} and "
                    f"{value.dtype} in this step, {tuple(shape)} and {dtype} in the first; "
                    "convert it (e.g. .to(dtype)) or write these steps to another store."
                )
        return rows

    def _start(self, batch: torch.Size, rows: dict[tuple[str, ...], torch.Tensor]) -> None:
        """Fixes the schema from the first step; a step it refuses changes nothing."""
        if self.done_key is not None and _as_tuple(self.done_key) not in rows:
            raise ValueError(
                f"{str(self.path)!r}: the first step has no done key {self.done_key!r} "
                f"(keys: {sorted(rows)}); pass done_key= the key that ends an episode, or "
                "done_key=None for one episode per batch entry."
            )
        orders = {key: self._video_order(key, rows.get(key), batch) for key in self._video_keys}
        self._batch = batch
        self._leaves = {key: (v.dtype, v.shape[1:]) for key, v in rows.items()}
        if self.episode_key is not None:
            self._leaves[(self.episode_key,)] = (torch.int64, batch)
        self._episode = torch.arange(batch.numel()).reshape(batch)
        self._next_episode = batch.numel()
        for key, order in orders.items():
            names = [self._video_file(key, entry) for entry in range(batch.numel())]
            self._videos[key] = (order, [open_video(name, fps=self._fps) for name in names])
        for key in self._leaves.keys() - self._videos.keys():
            self._file(key).parent.mkdir(parents=True, exist_ok=True)
            self._files[key] = open(self._file(key), "w+b", buffering=1 << 16)  # noqa: SIM115
        self._commit(complete=False)  # a crash from now on leaves a store with these keys

    def _video_order(
        self, key: tuple[str, ...], value: torch.Tensor | None, batch: torch.Size
    ) -> str:
        """``"HWC"`` or ``"CHW"``: where the channels of a video key's images are."""
        if value is None or value.dtype != torch.uint8:
            problem = "got nothing" if value is None else f"got {value.dtype}"
        else:
            image = value.reshape(-1, *value.shape[1 + len(batch) :])[0]
            problem = f"has images of shape {tuple(image.shape)}"
            try:
                layout = detect(image, self._video_layout)
            except LayoutError as err:
                problem += f": {err}"
            else:
                if layout.order != "HW" and layout.channels == 3:
                    return layout.order
                problem += f", read as {layout.describe()}"
        raise ValueError(
            f"{str(self.path)!r}: video key {key} {problem}; a video key holds uint8 RGB "
            "images [*batch, H, W, 3] or [*batch, 3, H, W]: pass video_layout='HWC' or 'CHW' "
            "when a shape reads both ways, convert with funrec.layout.normalize, or store the "
            "key raw (no video_keys)."
        )

    def _video_file(self, key: tuple[str, ...], entry: int) -> Path:
        return self.path.joinpath(*key[:-1], f"{key[-1]}.{entry}.mp4")

    def _user_keys(self) -> set[tuple[str, ...]]:
        return {key for key in self._leaves if key != (self.episode_key,)}

    def _episodes(self, td: TensorDictBase, count: int) -> tuple[torch.Tensor, tuple]:
        """The episode id of each row, and the (ids, next id) state after the last row."""
        assert self._episode is not None
        current, next_id = self._episode, self._next_episode
        done = None
        if self.done_key is not None:
            done = done_flags(td, self.done_key).reshape(count, *current.shape)
        ids = torch.empty((count, *current.shape), dtype=torch.int64)
        if done is None or not done.any():  # the common step: no episode ends
            ids[:] = current
            return ids, (current, next_id)
        current = current.clone()
        for t in range(count):
            ids[t] = current
            if done[t].any():
                ended = done[t]
                current[ended] = next_id + torch.arange(int(ended.sum()))
                next_id += int(ended.sum())
        return ids, (current, next_id)

    # -- files

    def _file(self, key: tuple[str, ...]) -> Path:
        return self.path.joinpath(*key[:-1], f"{key[-1]}.memmap")

    def _row_bytes(self, key: tuple[str, ...]) -> int:
        dtype, shape = self._leaves[key]
        return shape.numel() * dtype.itemsize

    def _grow(self) -> None:
        """Preallocates the next chunk of every file (its size doubles, up to max_chunk_bytes)."""
        row = max(1, sum(self._row_bytes(key) for key in self._files))
        chunk = min(self._first_chunk << self._chunks, max(1, self._max_chunk_bytes // row))
        capacity = self._capacity + chunk
        try:
            for key, file in self._files.items():
                _preallocate(file.fileno(), capacity * self._row_bytes(key))
        except OSError as err:
            # The reserve makes room for this last commit (and close's) on a full disk.
            (self.path / _RESERVE).unlink(missing_ok=True)
            with contextlib.suppress(WriterError):
                self._commit(complete=False)
            raise WriterError(
                f"{str(self.path)!r}: cannot allocate room for {capacity} steps "
                f"({err.strerror or err}); the {_committed(self.path)} steps written so far are "
                "committed and load; close() this writer and write the remaining steps to "
                "another disk.",
                path=self.path,
                written=_committed(self.path),
            ) from err
        self._capacity = capacity
        self._chunks += 1

    def _reserve(self) -> None:
        try:
            with open(self.path / _RESERVE, "wb") as file:
                _preallocate(file.fileno(), _RESERVE_BYTES)
        except OSError as err:
            raise WriterError(
                f"TrajectoryWriter: cannot write in {str(self.path)!r} ({err.strerror or err}); "
                "choose a directory on a disk with room."
            ) from err

    def _commit(self, *, complete: bool) -> None:
        for file in self._files.values():
            if not file.closed:
                file.flush()
        index = {
            "format": "funrec-trajectory",
            "version": 1,
            "steps": self.steps,
            "complete": complete,
            "batch_size": list(self._batch) if self._batch is not None else None,
            "leaves": [
                {"key": list(key), "dtype": str(dtype).removeprefix("torch."), "shape": list(shape)}
                for key, (dtype, shape) in self._leaves.items()
            ],
            "done_key": self.done_key,
            "episode_key": self.episode_key,
            "episodes": self._next_episode,
            "videos": {
                "/".join(key): {
                    "order": order,
                    "fps": self._fps,
                    "files": [str((w.partial or w.path).relative_to(self.path)) for w in writers],
                }
                for key, (order, writers) in self._videos.items()
            },
            "funrec_version": funrec_version(),
        }
        write_json(self.path / _INDEX, index)
        self._committed = self.steps
        self._cancel_timer()

    def _write_tensordict_meta(self) -> None:
        """Writes tensordict's ``meta.json`` files so ``TensorDict.load_memmap`` opens the store."""
        assert self._batch is not None or not self._leaves
        batch = [self.steps, *(self._batch or ())]
        tree: dict[tuple[str, ...], dict[str, Any]] = {(): {}}
        for key, (dtype, shape) in self._leaves.items():
            if key in self._videos:
                continue
            for depth in range(1, len(key)):
                tree.setdefault(key[:depth], {})
                tree[key[: depth - 1]][key[depth - 1]] = {"type": "TensorDict"}
            tree[key[:-1]][key[-1]] = {
                "device": "cpu",
                "shape": [self.steps, *shape],
                "dtype": str(dtype),
                "is_nested": False,
            }
        for prefix, entries in tree.items():
            entries.update(shape=batch, device="None", _type=str(TensorDict))
            write_json(self.path.joinpath(*prefix, "meta.json"), entries)


def _is_leaf(cls: type) -> bool:
    # Non-tensor entries count as leaves so they are refused, not silently skipped.
    return not issubclass(cls, TensorDictBase) or issubclass(cls, NonTensorData | NonTensorStack)


def _preallocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:  # file systems without fallocate: a sparse file
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, max(size, os.fstat(fd).st_size))


def _committed(path: Path) -> int:
    return json.loads((path / _INDEX).read_text())["steps"]


def _as_tuple(key: _NestedKey) -> tuple[str, ...]:
    return key if isinstance(key, tuple) else (key,)


def load(path: str | Path) -> TensorDict:
    """Opens a trajectory store as a memory-mapped TensorDict ``[T, *batch]``.

    Nothing is read until a value is used. A store whose writer was killed opens
    with the steps committed before the kill.

    Args:
      path: a directory written by :class:`TrajectoryWriter`.

    Returns:
      A TensorDict of ``MemoryMappedTensor`` s, batch size ``[T, *batch]``; with
      the writer's episode key (default ``"episode"``) holding episode ids.
      Writing into it writes to the files, as with ``TensorDict.load_memmap``.
      Video keys are decoded into memory, and ``T`` is cut to the frames decoded.

    Example:
      >>> from funrec.writers import load  # doctest: +SKIP
      >>> td = load("runs/traj")            # doctest: +SKIP
      >>> first = episode(td, 0)            # doctest: +SKIP
    """
    path = Path(path)
    try:
        index = json.loads((path / _INDEX).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"load({str(path)!r}): no {_INDEX} there; is it a funrec trajectory store "
            "(written by TrajectoryWriter)?"
        ) from None
    steps, batch = index["steps"], index["batch_size"] or []
    videos = {}
    for name, info in index.get("videos", {}).items():
        key = tuple(name.split("/"))
        files = info.get("files") or [
            str(Path(*key[:-1], f"{key[-1]}.{i}.mp4")) for i in range(math.prod(batch))
        ]
        videos[name] = _decode_videos([path / file for file in files], info["order"], batch)
        steps = min(steps, len(videos[name]))  # after a crash, ffmpeg may trail the commits
    td = TensorDict({}, batch_size=[steps, *batch])
    for leaf in index["leaves"]:
        key = tuple(leaf["key"])
        dtype = getattr(torch, leaf["dtype"])
        shape = [steps, *leaf["shape"]]
        if steps and "/".join(key) in videos:
            value = videos["/".join(key)][:steps]
        elif steps:
            file = path.joinpath(*key[:-1], f"{key[-1]}.memmap")
            value = MemoryMappedTensor.from_filename(file, dtype, shape)
        else:
            value = torch.empty(shape, dtype=dtype)
        td.set(key, value)
    return td


def _decode_videos(files: list[Path], order: str, batch: list[int]) -> torch.Tensor:
    """The videos of one key, decoded: uint8 ``[F, *batch, *image]`` in the stored order.

    ``F`` is the fewest frames of any of them (0 when a file is missing: no frame yet).
    """
    videos = [read_video(file) if file.exists() else torch.empty(0) for file in files]
    frames = min(len(video) for video in videos)
    if frames == 0:
        return torch.empty(0, dtype=torch.uint8)
    stacked = torch.stack([video[:frames] for video in videos], dim=1)  # [F, count, 3, H, W]
    if order == "HWC":
        stacked = stacked.permute(0, 1, 3, 4, 2)
    return stacked.reshape(frames, *batch, *stacked.shape[2:])


def episode(td: TensorDictBase, i: int, key: str = "episode") -> TensorDictBase:
    """Episode ``i`` of a loaded store, its steps in time order.

    Args:
      td: a TensorDict from :func:`load`.
      i: the episode id (ids count episodes in the order they started).
      key: the episode key the store was written with.

    Returns:
      A TensorDict of batch size ``[L]`` (a copy of that episode's steps).

    Example:
      >>> first = episode(load("runs/traj"), 0)  # doctest: +SKIP
    """
    if key not in td:
        raise KeyError(f"episode(): no {key!r} key; the store was written with episode_key=None.")
    return td[td.get(key) == i]
