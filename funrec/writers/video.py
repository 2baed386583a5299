"""Video writers: mp4 (streamed through ffmpeg), gif, a folder of png frames, ``.pt``, memmap.

:func:`open_video` returns a :class:`VideoWriter`, a context manager whose
``write(frames)`` takes what ``funrec.drain`` hands out for ``frames()``: uint8
``[3, H, W]`` or ``[T, 3, H, W]`` tensors. Beside every video a JSON sidecar
``<path>.json`` records frames, fps, width, height and the caller's metadata.

Every format follows one protocol. From the first frame, bytes go to a partial
file beside the target, ``<stem>.<token>.partial<suffix>``, whose name no other
run uses; ``close()`` finishes it and renames it onto the target, so the target
holds a complete video (the previous one until then) and a crash leaves the
partial, which :func:`read_video` reads and :func:`partials` lists:

* ``mp4`` is a fragmented mp4 written by a separate ffmpeg process (H.264,
  yuv420p, a keyframe every second): a partial plays up to its last fragment;
* ``gif`` and ``png`` (a folder of ``000000.png``...) are written by ffmpeg too,
  a png file appearing only once whole;
* ``pt`` and ``memmap`` partials are raw uint8 ``[T, 3, H, W]`` bytes (a ``.pt`` is
  ``torch.save``'d from them on ``close()``).

Frames move to the file in a thread of the writer's own, so a Ctrl-C in the
caller never cuts a frame in two; each frame is kept until it is in the file
(about a second of video for mp4, the time ffmpeg holds a fragment), so a
failure hands back every frame that did not make it (:class:`WriterError`).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import math
import os
import subprocess
import tempfile
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from funrec.writers import _ffmpeg
from funrec.writers._files import (
    WriterError,
    check_fps,
    finish,
    funrec_version,
    partial_beside,
    remove,
    save_beside,
    sidecar_path,
    temp_beside,
    write_json,
)

__all__ = ["FORMATS", "VideoWriter", "iter_video", "open_video", "read_video"]

FORMATS = ("mp4", "gif", "png", "pt", "memmap")
_SUFFIXES = {".mp4": "mp4", ".gif": "gif", ".pt": "pt", ".memmap": "memmap"}
_CHUNK = 64  # frames decoded at a time
_QUEUE_BYTES = 4 << 20  # frames taken but not handed on yet: write() waits beyond this
_PIPE_BYTES = 1 << 20  # ffmpeg's stdin: Linux's largest pipe without privileges


def open_video(
    path: str | Path,
    fps: float = 30,
    *,
    format: str | None = None,
    codec: str = "libx264",
    crf: int | None = 20,
    preset: str | None = "ultrafast",
    threads: int | None = 1,
    metadata: dict[str, Any] | None = None,
    size: tuple[int, int] | None = None,
) -> VideoWriter:
    """Opens a video file for streaming writes.

    Args:
      path: the output path. Its suffix picks the format (``.mp4``, ``.gif``,
        ``.pt``, ``.memmap``); a folder of png frames needs ``format="png"``.
        Missing parent directories are created. Any name the file system takes
        works (colons, a leading ``-``, ``%``).
      fps: frames per second, a number in [0.001, 1000] (Python, numpy or a 0-d
        tensor; 24000/1001 is kept exact).
      format: one of ``"mp4"``, ``"gif"``, ``"png"``, ``"pt"``, ``"memmap"``;
        overrides the suffix.
      codec: mp4 only, the ffmpeg video encoder.
      crf: mp4 only, the constant rate factor (0 lossless ... 51 worst); None to
        leave it to the encoder (needed for encoders without ``-crf``).
      preset: mp4 only, the encoder speed preset; None for encoders without one.
      threads: mp4 only, the encoder's threads (ffmpeg's ``-threads``): 1 keeps
        encoding on one core, beside a rollout on another; 0 or None lets the
        encoder pick (libx264: 1.5 per core).
      metadata: JSON-serialisable values stored in the sidecar under ``"metadata"``
        (e.g. source key, layout, skip, counts). ``writer.metadata`` can be
        updated until ``close()``.
      size: ``(height, width)`` of the frames, when known: the partial file and
        ffmpeg start now rather than at the first frame (e.g. before a jitted
        scan that streams into the writer from a ``jax`` callback).

    Returns:
      A :class:`VideoWriter`. Its partial file is created with the first frame (or
      now, given ``size``); a writer closed without frames leaves no file.

    Example:
      >>> import torch
      >>> from funrec.writers import open_video, read_video
      >>> with open_video("/tmp/funrec-doc.mp4", fps=10) as w:
      ...     w.write(torch.zeros(4, 3, 32, 48, dtype=torch.uint8))
      >>> read_video("/tmp/funrec-doc.mp4").shape
      torch.Size([4, 3, 32, 48])
    """
    path = Path(path)
    where = f"open_video({str(path)!r})"
    if format is None:
        format = _SUFFIXES.get(path.suffix.lower())
        if format is None:
            raise ValueError(
                f"{where}: cannot tell the format from the suffix {path.suffix!r}; use a "
                f".mp4/.gif/.pt/.memmap suffix or pass format= one of {FORMATS} "
                "(format='png' writes a folder of png frames)."
            )
    if format not in FORMATS:
        raise ValueError(f"{where}: format={format!r}; use one of {FORMATS}.")
    fps = check_fps(fps, where)
    # Fail now, not at the first frame, when the directory cannot be written.
    remove(temp_beside(path))
    if threads is not None and (type(threads) is not int or threads < 0):
        raise ValueError(
            f"{where}: threads={threads!r}; use an int >= 0 (0 or None: the encoder decides)."
        )
    if size is not None and (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)
    ):
        raise ValueError(f"{where}: size={size!r}; pass (height, width), two positive ints.")
    settings = {"codec": codec, "crf": crf, "preset": preset, "threads": threads}
    settings = settings if format == "mp4" else {}
    writer = VideoWriter(path, fps, format, settings, dict(metadata or {}))
    if size is not None:
        writer._start(*size)
    return writer


class VideoWriter:
    """A video being written; made by :func:`open_video`.

    Attributes:
      path: the path ``close()`` puts the video at.
      partial: the partial file the frames go to (None before the first frame and
        once the video is finished).
      format: ``"mp4"``, ``"gif"``, ``"png"``, ``"pt"`` or ``"memmap"``.
      fps: frames per second.
      frames: how many frames the writer took so far.
      written: how many of them are in the partial file already.
      size: ``(height, width)``, fixed by the first frame; None before it.
      metadata: the caller's dict stored in the sidecar on ``close()``.
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        format: str,
        settings: dict[str, Any],
        metadata: dict[str, Any],
    ) -> None:
        self.path = path
        self.partial: Path | None = None
        self.format = format
        self.fps = fps
        self.size: tuple[int, int] | None = None
        self.metadata = metadata
        self._settings = settings
        self._stream: _Stream | None = None
        self._closed = False
        self._final: Path | None = None

    @property
    def frames(self) -> int:
        return 0 if self._stream is None else self._stream.taken

    @property
    def written(self) -> int:
        return 0 if self._stream is None else self._stream.written

    def write(self, frames: torch.Tensor) -> None:
        """Takes frames for the video: all of them, or none if it raises.

        Returns once they are queued for the writer's thread; waits while more than
        4 MB of frames are queued (ffmpeg is behind), never drops.

        Args:
          frames: uint8 ``[3, H, W]`` or ``[T, 3, H, W]`` (``C == 1`` is repeated to
            3 channels), on any device. Every frame has the first frame's size.
            The writer copies them: the caller may reuse its buffer.

        Raises:
          ValueError: wrong rank, channels, dtype or frame size; the writer stays
            usable.
          WriterError: the file could not be written (disk full, ffmpeg died),
            now or for earlier frames; the writer is closed. None of these frames
            were taken; the error says where every frame taken before is.
        """
        if self._closed:
            raise WriterError(f"{str(self.path)!r}: write() on a closed VideoWriter.")
        batch = self._check(frames)
        if batch.shape[0] == 0:
            return
        if self._stream is None:
            self._start(batch.shape[2], batch.shape[3])
        assert self._stream is not None
        if not self._stream.put(batch):
            self._fail(self._stream.error)

    def flush(self) -> None:
        """Blocks until every frame taken is in ffmpeg's hands (pt/memmap: in the file).

        ``write`` returns once its frames are queued: a process killed right after
        it may lose the frames still queued (at most 4 MB, the newest). After
        ``flush``, a killed Python process loses none (ffmpeg finishes the partial).

        Raises:
          WriterError: as for ``write``.
        """
        if self._stream is not None and not self._closed and not self._stream.flush():
            self._fail(self._stream.error)

    def close(self, path: str | Path | None = None) -> Path | None:
        """Finishes the video and moves it to ``path`` (default: the path it was opened with).

        The target is replaced in one rename, with its sidecar; until then it holds
        what it held before. Closing again is a no-op.

        Args:
          path: where to put the finished video (same format), e.g. a name known
            only once the recording ends.

        Returns:
          The path of the video, or None when no frame was written.

        Raises:
          WriterError: the file could not be finished; it stays at ``partial``
            with the frames ``written``, the others are in ``unwritten``.
        """
        if self._closed:
            return self._final
        target = self.path if path is None else self._check_target(Path(path))
        stream = self._stream
        if stream is not None and stream.taken == 0:  # started by open_video(size=...)
            stream.abort()
            assert self.partial is not None
            remove(self.partial)
            sidecar_path(self.partial).unlink(missing_ok=True)
            self.partial = stream = None
        if stream is None:
            self._closed = True
            return None
        try:  # a Ctrl-C in here leaves the writer open: close() again carries on
            finished = stream.finish()
            finish(finished, target, self._sidecar(finished, complete=True))
        except (OSError, WriterError) as err:
            self._fail(err)
        self._closed = True
        assert self.partial is not None
        if finished != self.partial:  # .pt: saved from the raw partial, now redundant
            remove(self.partial)
            sidecar_path(self.partial).unlink(missing_ok=True)
        self.path = self._final = target
        self.partial = None
        return target

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoWriter({str(self.path)!r}, format={self.format!r}, frames={self.frames})"

    def _check(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor):
            raise TypeError(
                f"{str(self.path)!r}: write() takes a torch.Tensor, got {type(frames).__name__}; "
                "convert with torch.as_tensor(...)."
            )
        batch = frames[None] if frames.ndim == 3 else frames
        if batch.ndim != 4 or batch.shape[1] not in (1, 3):
            raise ValueError(
                f"{str(self.path)!r}: write() takes frames [3, H, W] or [T, 3, H, W], got shape "
                f"{tuple(frames.shape)}; put channels first (x.permute(2, 0, 1) for one HWC "
                "frame) or use funrec.layout.normalize."
            )
        if frames.dtype != torch.uint8:
            raise ValueError(
                f"{str(self.path)!r}: write() takes uint8 frames, got {frames.dtype} of shape "
                f"{tuple(frames.shape)}; convert with funrec.layout.normalize(x, layout) or "
                "x.mul(255).round().clamp(0, 255).to(torch.uint8) for [0, 1] floats."
            )
        height, width = batch.shape[2], batch.shape[3]
        if height == 0 or width == 0:
            raise ValueError(f"{str(self.path)!r}: empty frames of shape {tuple(frames.shape)}.")
        if self.size is not None and (height, width) != self.size and not self.frames:
            raise ValueError(
                f"{str(self.path)!r}: frames of {height}x{width} (HxW, shape "
                f"{tuple(frames.shape)}), but open_video(size={self.size}) fixed "
                f"{self.size[0]}x{self.size[1]}; open it with the frames' size."
            )
        if self.size is not None and (height, width) != self.size:
            raise ValueError(
                f"{str(self.path)!r}: frame size changed from {self.size[0]}x{self.size[1]} to "
                f"{height}x{width} (HxW, shape {tuple(frames.shape)}) after {self.frames} frames; "
                "a video has one frame size: close this one and write these frames to another "
                "path, or resize them."
            )
        return batch.cpu().expand(-1, 3, -1, -1)

    def _check_target(self, path: Path) -> Path:
        suffix = _SUFFIXES.get(path.suffix.lower())
        if self.format != "png" and suffix != self.format:
            raise ValueError(
                f"{str(self.path)!r}: close(path={str(path)!r}) would name a {self.format} video "
                f"{path.suffix or 'without a suffix'}; give it a .{self.format} suffix."
            )
        return path

    def _start(self, height: int, width: int) -> None:
        """Creates the partial file and its sidecar, and starts the sink: nothing is taken yet."""
        self.size = (height, width)
        self.partial = partial_beside(self.path, directory=self.format == "png")
        try:
            self._write_sidecar(complete=False)
            if self.format in ("pt", "memmap"):
                sink: _Sink = _RawSink(self.partial, self.format, self.size, self.path)
            else:
                sink = _FfmpegSink(self.partial, self.format, self.fps, self.size, self._settings)
        except (OSError, WriterError) as err:
            # Nothing was written: the empty partial goes, the frames stay with the caller.
            remove(self.partial)
            sidecar_path(self.partial).unlink(missing_ok=True)
            self.size = self.partial = None
            raise WriterError(f"cannot start writing {str(self.path)!r}: {err}") from err
        self._stream = _Stream(sink, self.size)

    def _fail(self, cause: BaseException | None) -> None:
        """Stops writing and raises a WriterError saying where every frame taken is."""
        self._closed = True
        stream = self._stream
        assert stream is not None and self.partial is not None
        unwritten = stream.abort()
        written = stream.written
        with contextlib.suppress(WriterError):  # best effort: the disk may be full
            self._write_sidecar(complete=False, error=str(cause))
        lost = len(unwritten) if unwritten is not None else 0
        missing = f"the {lost} after them are in this error's .unwritten" if lost else "no other"
        raise WriterError(
            f"writing {str(self.path)!r} failed after {written + lost} frames: {cause} "
            f"The partial file {str(self.partial)!r} holds the first {written} (read_video "
            f"reads it); {missing}. Write the rest to another path.",
            path=self.partial,
            written=written,
            unwritten=unwritten,
        ) from cause

    def _sidecar(self, file: Path, *, complete: bool, error: str | None = None) -> dict[str, Any]:
        assert self.size is not None
        raw = not complete and self.format in ("pt", "memmap")
        info: dict[str, Any] = {
            "format": "memmap" if raw else self.format,
            "frames": self.frames if complete else None,
            "fps": self.fps,
            "width": self.size[1],
            "height": self.size[0],
            "complete": complete,
            **self._settings,
        }
        if complete:
            info["bytes"] = _file_size(file, self.format)
        if self.format == "memmap" and complete:
            info.update(shape=[1, self.frames, 3, *self.size], dtype="uint8")
        if error is not None:
            info.update(error=error, written=self.written)
        info.update(funrec_version=funrec_version(), metadata=self.metadata)
        return info

    def _write_sidecar(self, *, complete: bool, error: str | None = None) -> None:
        assert self.partial is not None
        info = self._sidecar(self.partial, complete=complete, error=error)
        write_json(sidecar_path(self.partial), info)


class _Sink(Protocol):
    """Where one format's bytes go, frame by frame."""

    order: str  # "HWC" or "CHW": the byte order of a frame
    shape: tuple[int, int, int]  # of one frame as sent (mp4: sides padded to even)

    def send(self, frames: memoryview) -> None: ...  # whole frames end to end; raises OSError

    def whole_frames(self) -> int: ...  # frames in the file now

    def interrupt(self) -> None: ...  # unblocks a send() in progress

    def finish(self) -> Path: ...  # completes the file; returns the file to rename

    def abort(self) -> None: ...  # releases processes and files; the file stays


class _FfmpegSink:
    """Pipes raw RGB frames into an ffmpeg process writing mp4, gif or png frames."""

    order = "HWC"

    def __init__(
        self, path: Path, format: str, fps: float, size: tuple[int, int], settings: dict[str, Any]
    ) -> None:
        self.path = path
        self.counter = _ffmpeg.WholeFrames(path, format)
        if format == "mp4":  # yuv420p needs even sides: the last row/column is repeated
            size = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        self.shape = (*size, 3)
        args = _ffmpeg.encode_args(path, format, fps, size, settings)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - ffmpeg's stderr
        try:
            self.proc = _ffmpeg.start(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                bufsize=0,
            )
        except OSError:
            self.log.close()
            raise
        assert self.proc.stdin is not None
        self.pipe = self.proc.stdin
        # A pipe that holds a whole frame: one write per frame instead of one per 64 KiB,
        # each a round trip through the scheduler with ffmpeg's reader (Linux only).
        with contextlib.suppress(AttributeError, OSError):  # kept at 64 KiB if refused
            fcntl.fcntl(self.pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)

    def send(self, frames: memoryview) -> None:
        sent = 0
        try:
            while sent < len(frames):  # an unbuffered pipe may take part of them at a time
                sent += self.pipe.write(frames[sent:]) or 0
        except BrokenPipeError:
            raise WriterError(_ffmpeg.failure(self.proc, self.log)) from None

    def whole_frames(self) -> int:
        return self.counter.count() or 0

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def finish(self) -> Path:
        with contextlib.suppress(BrokenPipeError):
            self.pipe.close()
        if self.proc.wait() != 0:
            raise WriterError(_ffmpeg.failure(self.proc, self.log))
        self.log.close()
        return self.path

    def abort(self) -> None:
        self.interrupt()
        self.proc.wait()
        with contextlib.suppress(OSError):
            self.pipe.close()
        self.log.close()


class _RawSink:
    """Appends packed uint8 ``[3, H, W]`` frames to a file; ``.pt`` is saved from it at the end."""

    order = "CHW"

    def __init__(self, path: Path, format: str, size: tuple[int, int], target: Path) -> None:
        self.path = path
        self.format = format
        self.size = size
        self.shape = (3, *size)
        self.frame_bytes = 3 * size[0] * size[1]
        self.target = target
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self.bytes = 0

    def send(self, frames: memoryview) -> None:
        sent = 0
        try:  # one write for many frames: a write per 21 KB frame cost 2.5x as much on ext4
            while sent < len(frames):
                sent += os.write(self.fd, frames[sent:])
        finally:
            self.bytes += sent

    def whole_frames(self) -> int:
        return self.bytes // self.frame_bytes

    def interrupt(self) -> None:
        pass  # a file write never waits for long

    def finish(self) -> Path:
        os.close(self.fd)
        self.fd = -1
        if self.format == "memmap":
            return self.path
        raw = torch.from_file(str(self.path), size=self.bytes, dtype=torch.uint8)
        return save_beside(raw.view(1, self.whole_frames(), 3, *self.size), self.target)

    def abort(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):  # a torn last frame is not a frame
                os.ftruncate(self.fd, self.whole_frames() * self.frame_bytes)
            os.close(self.fd)
            self.fd = -1


class _Stream:
    """Moves taken frames to a sink in a thread, keeping each one until it is in the file.

    The caller's thread only copies frames into buffers and queues them; a Ctrl-C
    there cannot cut a frame in two, since the writing thread never gets it.
    """

    def __init__(self, sink: _Sink, size: tuple[int, int]) -> None:
        self.sink = sink
        self.size = size
        self.shape = sink.shape
        self.pending: deque[torch.Tensor] = deque()  # taken, not in the file yet, in order
        self.sent = 0  # how many of ``pending`` the sink has
        self.written = 0  # frames in the file
        self.handed_back = 0  # frames given back in a WriterError
        self.error: BaseException | None = None
        self.closing = False
        self.pool: list[torch.Tensor] = []  # blocks whose frames are all in the file, for reuse
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="funrec-video-writer", daemon=True)
        self.thread.start()

    @property
    def taken(self) -> int:
        return self.written + len(self.pending) + self.handed_back

    def put(self, batch: torch.Tensor) -> bool:
        """Queues copies of ``batch`` (waiting while the queue is full); False after a failure."""
        if not self._wait(lambda: self._unsent_bytes() < _QUEUE_BYTES):
            return False
        frames = self._copy(batch).unbind(0)  # views of one block: the batch in one copy
        with self.cond:
            self.pending.extend(frames)  # one step: a Ctrl-C takes all of them or none
            self.cond.notify_all()
        return True

    def finish(self) -> Path:
        """Hands every frame to the sink, completes the file and returns it.

        Raises:
          WriterError or OSError: the sink failed, or the file lacks frames taken.
        """
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join()
        if self.error is not None:
            raise WriterError(str(self.error)) from self.error
        finished = self.sink.finish()
        written = self.sink.whole_frames()
        if written != self.taken:
            raise WriterError(f"the file holds {written} of the {self.taken} frames written.")
        self.written = written
        self.pending.clear()
        return finished

    def abort(self) -> torch.Tensor | None:
        """Stops everything; returns the frames taken that are not in the file (or None)."""
        with self.cond:
            self.closing = True
            self.error = self.error or WriterError("aborted")
            self.cond.notify_all()
        self.sink.interrupt()
        self.thread.join()
        self.sink.abort()
        written = self.sink.whole_frames()
        frames = list(self.pending)[max(0, written - self.written) :]
        self.written = min(written, self.taken)
        self.pending.clear()
        self.handed_back = len(frames)
        if not frames:
            return None
        return torch.stack([self._frame(buffer) for buffer in frames])

    def flush(self) -> bool:
        """Waits until the sink has every frame taken; False after a failure."""
        return self._wait(lambda: self.sent == len(self.pending))

    def _wait(self, ready: Callable[[], bool]) -> bool:
        with self.cond:
            while not ready() and self.error is None:
                self.cond.notify_all()  # in case a Ctrl-C came between queueing and notifying
                self.cond.wait()
            return self.error is None

    def _unsent_bytes(self) -> int:
        return (len(self.pending) - self.sent) * math.prod(self.shape)

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.sent == len(self.pending) and not self.closing:
                    self.cond.wait()
                if self.sent == len(self.pending) or self.error is not None:
                    return
                # Every queued frame at once: one hand-off and one look at the file per batch.
                batch = list(itertools.islice(self.pending, self.sent, None))
            try:
                for frames in _blocks(batch):
                    self.sink.send(frames)
                written = self.sink.whole_frames()
            except BaseException as err:  # reported in the caller's thread
                with self.cond:
                    self.error = self.error or err
                    self.cond.notify_all()
                return
            with self.cond:
                self.sent += len(batch)
                done = min(max(0, written - self.written), self.sent)
                for _ in range(done):
                    frame = self.pending.popleft()
                    block = _block_of(frame)
                    if frame.data_ptr() + frame.nbytes == block.data_ptr() + block.nbytes:
                        self.pool.append(block)  # its last frame: the whole block is written
                self.sent -= done
                self.written += done
                self.cond.notify_all()

    def _copy(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` in one block of the sink's byte order: one copy, however many frames.

        numpy's strided copy, since it moves a channels-last batch to channels-first
        (the ``.pt`` of a rendered frame) 1.6x as fast as ``Tensor.copy_`` does.
        """
        block = self._block(len(batch))
        if self.sink.order == "CHW":
            np.copyto(block.numpy(), batch.numpy())
            return block
        height, width = self.size
        np.copyto(block[:, :height, :width].numpy(), batch.permute(0, 2, 3, 1).numpy())
        if self.shape[0] > height:  # mp4: odd sides repeat their last row/column
            block[:, height:] = block[:, height - 1 : height]
        if self.shape[1] > width:
            block[:, :, width:] = block[:, :, width - 1 : width]
        return block

    def _block(self, frames: int) -> torch.Tensor:
        """A block for ``frames`` frames: a written one of that size, else fresh memory.

        Reuse spares the page faults of fresh memory (a 224x224 frame: 37 of them).
        A pooled block of another size is dropped, so the pool never holds more
        than the frames in flight once did.
        """
        while self.pool:
            block = self.pool.pop()
            if len(block) == frames:
                return block
        return torch.empty((frames, *self.shape), dtype=torch.uint8)

    def _frame(self, buffer: torch.Tensor) -> torch.Tensor:
        if self.sink.order == "CHW":
            return buffer
        return buffer[: self.size[0], : self.size[1]].permute(2, 0, 1)


def _blocks(frames: list[torch.Tensor]) -> Iterator[memoryview]:
    """The bytes of queued frames, one block at a time.

    ``frames`` are views of the blocks ``put`` queued, each block whole and in
    order (it is queued in one step, and taken from the queue in one step).
    """
    for frame in frames:
        block = _block_of(frame)
        if frame.data_ptr() == block.data_ptr():  # its first frame
            yield block.numpy().data.cast("B")


def _block_of(frame: torch.Tensor) -> torch.Tensor:
    """The block a queued frame is a view of (``_Stream.put`` queues views only)."""
    block = frame._base
    assert block is not None
    return block


def read_video(path: str | Path) -> torch.Tensor:
    """Reads a video written by funrec (or TorchRL's CSVLogger ``pt``) back into memory.

    mp4, gif and png folders are decoded by ffmpeg (frames are returned as
    decoded: lossy for mp4/gif, exact for png); ``pt`` and ``memmap`` are exact.
    A partial file (a crashed or failed write) reads as the whole frames it
    holds. Memory: the result, plus one chunk of decoded frames; for videos
    longer than memory, use :func:`iter_video`.

    Args:
      path: a video file or png folder. The sidecar ``<path>.json`` gives the
        format and size when it still describes the file (a sidecar left over from
        another file is ignored, with a warning); otherwise the suffix does (a
        directory is a png folder). ``memmap`` needs the sidecar for the frame size.

    Returns:
      uint8 ``[T, 3, H, W]``, cropped to the size that was written.

    Example:
      >>> import torch
      >>> from funrec.writers import open_video, read_video
      >>> frames = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
      >>> with open_video("/tmp/funrec-doc.pt") as w:
      ...     w.write(frames)
      >>> bool((read_video("/tmp/funrec-doc.pt") == frames).all())
      True
    """
    path = Path(path)
    source = _Source(path)
    if source.format == "pt":
        video = torch.load(path, weights_only=True)
        return video.flatten(0, 1) if video.ndim == 5 else video
    if source.format == "memmap":
        return source.memmap().clone()
    video, filled = None, 0
    for chunk in source.decode(_CHUNK):
        chunk = chunk.permute(0, 3, 1, 2)
        if video is None:
            video = torch.empty(source.count, *chunk.shape[1:], dtype=torch.uint8)
        if filled + len(chunk) > len(video):  # more frames than counted: grow (rare)
            video = torch.cat([video[:filled], torch.empty_like(video)])
        video[filled : filled + len(chunk)].copy_(chunk)
        filled += len(chunk)
    if video is None:
        return torch.empty(0, 3, source.height or 0, source.width or 0, dtype=torch.uint8)
    return video[:filled]


def iter_video(path: str | Path, chunk: int = _CHUNK) -> Iterator[torch.Tensor]:
    """Reads a video chunk by chunk, for videos too long to hold in memory.

    Args:
      path: as for :func:`read_video`.
      chunk: the most frames per chunk.

    Yields:
      uint8 ``[n, 3, H, W]`` tensors, ``n <= chunk``, in order; each is fresh.

    Example:
      >>> import torch
      >>> from funrec.writers import iter_video, open_video
      >>> with open_video("/tmp/funrec-doc.memmap") as w:
      ...     w.write(torch.zeros(5, 3, 4, 4, dtype=torch.uint8))
      >>> [len(c) for c in iter_video("/tmp/funrec-doc.memmap", chunk=2)]
      [2, 2, 1]
    """
    if chunk < 1:
        raise ValueError(f"iter_video: chunk={chunk!r}; pass a positive number of frames.")
    path = Path(path)
    source = _Source(path)
    if source.format in ("pt", "memmap"):
        video = read_video(path) if source.format == "pt" else source.memmap()
        for start in range(0, len(video), chunk):
            yield video[start : start + chunk].clone()
        return
    for frames in source.decode(chunk):
        yield frames.permute(0, 3, 1, 2).contiguous()


class _Source:
    """What :func:`read_video` knows about a file before decoding it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        info = _trusted_sidecar(path)
        format = info.get("format")
        if format is None:
            format = "png" if path.is_dir() else _SUFFIXES.get(path.suffix.lower())
        self.height, self.width = info.get("height"), info.get("width")
        if format not in FORMATS:
            raise ValueError(
                f"read_video({str(path)!r}): unknown format; expected a .mp4/.gif/.pt/.memmap "
                "file, a png folder, or a funrec sidecar next to it."
            )
        self.format: str = format
        if not path.exists():
            if info.get("complete") is False and self.format == "mp4":
                self.count = 0  # killed before ffmpeg created the file
                return
            raise FileNotFoundError(f"read_video: {str(path)!r} does not exist.")
        self.count = 0
        if self.format in ("mp4", "gif", "png"):
            whole = _ffmpeg.WholeFrames(path, self.format).count()
            self.count = _ffmpeg.count_packets(path) if whole is None else whole

    def memmap(self) -> torch.Tensor:
        """The frames of a raw file, memory-mapped: ``[T, 3, H, W]``, T from the file's size."""
        if self.height is None or self.width is None:
            raise ValueError(
                f"read_video({str(self.path)!r}): a memmap file needs its sidecar "
                f"{str(sidecar_path(self.path))!r} for the frame size; without it, use "
                "tensordict.MemoryMappedTensor.from_filename(path, torch.uint8, shape)."
            )
        from tensordict import MemoryMappedTensor

        frames = self.path.stat().st_size // (3 * self.height * self.width)
        if frames == 0:
            return torch.empty(0, 3, self.height, self.width, dtype=torch.uint8)
        shape = [frames, 3, self.height, self.width]
        return MemoryMappedTensor.from_filename(self.path, torch.uint8, shape).as_subclass(
            torch.Tensor
        )

    def decode(self, chunk: int) -> Iterator[torch.Tensor]:
        """Decoded frames as uint8 ``[n, H, W, 3]`` views, cropped to the size written."""
        if not self.count:
            return
        for frames in _ffmpeg.decode(self.path, self.format, self.count, chunk):
            yield frames[:, : self._crop(frames.shape[1], 0), : self._crop(frames.shape[2], 1)]

    def _crop(self, decoded: int, axis: int) -> int:
        """The written side: mp4 pads odd sides by one, which the sidecar's size undoes."""
        written = (self.height, self.width)[axis]
        if written is None or decoded not in (written, written + written % 2):
            return decoded  # a sidecar describing another size: trust the file
        return written


def _trusted_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of ``path`` if it describes the file there now, else ``{}``."""
    side = sidecar_path(path)
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    recorded = info.get("bytes")
    if info.get("complete") and recorded is not None and path.exists():
        actual = _file_size(path, info.get("format", ""))
        if actual != recorded:
            warnings.warn(
                f"read_video: the sidecar {str(side)!r} describes a file of {recorded} bytes, "
                f"but {str(path)!r} has {actual}: another program rewrote it. The sidecar is "
                "ignored and the file is read as it is.",
                RuntimeWarning,
                stacklevel=3,
            )
            return {}
    return info


def _file_size(path: Path, format: str) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size
