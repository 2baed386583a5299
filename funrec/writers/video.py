"""Video writers: mp4 (streamed through ffmpeg), gif, a folder of png frames, ``.pt``, memmap.

:func:`open_video` returns a :class:`VideoWriter`, a context manager whose
``write(frames)`` takes what ``funrec.drain`` hands out for ``frames()``: uint8
``[3, H, W]`` or ``[T, 3, H, W]`` tensors. Beside every video a JSON sidecar
``<path>.json`` records frames, fps, width, height and the caller's metadata.

How each format reaches the disk:

* ``mp4`` streams under its final name: frames go through a pipe to a separate
  ffmpeg process (H.264, yuv420p, fragmented mp4 with a keyframe every second), so
  memory does not grow with the video and a killed process leaves a file that plays
  up to its last fragment. The sidecar says ``"complete": false`` until ``close()``.
* ``gif``, ``png`` (a directory of ``000000.png``...), ``pt`` and ``memmap`` are
  written under a temporary name in the same directory and renamed on ``close()``:
  the final name holds a complete file or nothing.

:func:`read_video` reads any of them back as uint8 ``[T, 3, H, W]``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import torch

from funrec.writers._files import (
    WriterError,
    funrec_version,
    remove,
    replace,
    temp_beside,
    write_json,
)

__all__ = ["FORMATS", "VideoWriter", "open_video", "read_video", "sidecar_path"]

FORMATS = ("mp4", "gif", "png", "pt", "memmap")
_SUFFIXES = {".mp4": "mp4", ".gif": "gif", ".pt": "pt", ".memmap": "memmap"}
_FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a video: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def open_video(
    path: str | Path,
    fps: float = 30,
    *,
    format: str | None = None,
    codec: str = "libx264",
    crf: int | None = 20,
    preset: str | None = "veryfast",
    metadata: dict[str, Any] | None = None,
) -> VideoWriter:
    """Opens a video file for streaming writes.

    Args:
      path: the output path. Its suffix picks the format (``.mp4``, ``.gif``,
        ``.pt``, ``.memmap``); a folder of png frames needs ``format="png"``.
        Missing parent directories are created.
      fps: frames per second (any positive number; 24000/1001 is kept exact).
      format: one of ``"mp4"``, ``"gif"``, ``"png"``, ``"pt"``, ``"memmap"``;
        overrides the suffix.
      codec: mp4 only, the ffmpeg video encoder.
      crf: mp4 only, the constant rate factor (0 lossless ... 51 worst); None to
        leave it to the encoder (needed for encoders without ``-crf``).
      preset: mp4 only, the encoder speed preset; None for encoders without one.
      metadata: JSON-serialisable values stored in the sidecar under ``"metadata"``
        (e.g. source key, layout, skip, counts). ``writer.metadata`` can be
        updated until ``close()``.

    Returns:
      A :class:`VideoWriter`. The file is created with the first frame; a writer
      closed without frames leaves no file.

    Example:
      >>> import torch
      >>> from funrec.writers import open_video, read_video
      >>> with open_video("/tmp/funrec-doc.mp4", fps=10) as w:
      ...     w.write(torch.zeros(4, 3, 32, 48, dtype=torch.uint8))
      >>> read_video("/tmp/funrec-doc.mp4").shape
      torch.Size([4, 3, 32, 48])
    """
    path = Path(path)
    if format is None:
        format = _SUFFIXES.get(path.suffix.lower())
        if format is None:
            raise ValueError(
                f"open_video({str(path)!r}): cannot tell the format from the suffix "
                f"{path.suffix!r}; use a .mp4/.gif/.pt/.memmap suffix or pass "
                f"format= one of {FORMATS} (format='png' writes a folder of png frames)."
            )
    if format not in FORMATS:
        raise ValueError(f"open_video({str(path)!r}): format={format!r}; use one of {FORMATS}.")
    if not fps > 0:
        raise ValueError(f"open_video({str(path)!r}): fps={fps!r}; pass a positive number.")
    # Fail now, not at the first frame, when the directory cannot be written.
    remove(temp_beside(path))
    settings = {"codec": codec, "crf": crf, "preset": preset} if format == "mp4" else {}
    return VideoWriter(path, fps, format, settings, dict(metadata or {}))


class VideoWriter:
    """A video being written; made by :func:`open_video`.

    Attributes:
      path: the final path of the video.
      format: ``"mp4"``, ``"gif"``, ``"png"``, ``"pt"`` or ``"memmap"``.
      fps: frames per second.
      frames: how many frames were handed to the file so far.
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
        self.format = format
        self.fps = fps
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.metadata = metadata
        self._settings = settings
        self._sink: _Sink | None = None
        self._closed = False

    def write(self, frames: torch.Tensor) -> None:
        """Appends frames to the video.

        Blocks while ffmpeg is behind (the pipe is the only buffer); never drops.

        Args:
          frames: uint8 ``[3, H, W]`` or ``[T, 3, H, W]`` (``C == 1`` is repeated to
            3 channels), on any device. Every frame has the first frame's size.

        Raises:
          ValueError: wrong rank, channels, dtype or frame size; nothing of this
            call is written and the writer stays usable.
          WriterError: the file could not be written (disk full, ffmpeg died); the
            writer is closed, an mp4 keeps its playable prefix, other formats
            leave no file.
        """
        if self._closed:
            raise WriterError(f"{str(self.path)!r}: write() on a closed VideoWriter.")
        batch = self._check(frames)
        if batch.shape[0] == 0:
            return
        try:
            if self._sink is None:
                self.size = (batch.shape[2], batch.shape[3])
                self._sink = _open_sink(self.path, self.format, self.fps, self.size, self._settings)
                if self.format == "mp4":
                    self._write_sidecar(complete=False)
            self._sink.write(batch)
        except (OSError, WriterError) as err:
            self._fail(err)
        self.frames += batch.shape[0]

    def close(self) -> None:
        """Finishes the file and writes the sidecar; closing twice is a no-op.

        Raises:
          WriterError: the file could not be finished (for mp4: ffmpeg failed; the
            file keeps what it decoded so far).
        """
        if self._closed:
            return
        if self._sink is None:
            self._closed = True
            return
        try:
            self._sink.finish()
        except (OSError, WriterError) as err:
            self._fail(err)
        self._closed = True
        self._write_sidecar(complete=True)

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
        if self.size is not None and (height, width) != self.size:
            raise ValueError(
                f"{str(self.path)!r}: frame size changed from {self.size[0]}x{self.size[1]} to "
                f"{height}x{width} (HxW, shape {tuple(frames.shape)}) after {self.frames} frames; "
                "a video has one frame size: close this one and write these frames to another "
                "path, or resize them."
            )
        return batch.cpu().expand(-1, 3, -1, -1)  # strides as given: the sinks read any layout

    def _fail(self, err: BaseException) -> None:
        self._closed = True
        if self._sink is not None:
            self._sink.abort()
        if self.format == "mp4" and self._sink is not None:
            # Best effort (the disk may be full): the sidecar marks the prefix incomplete.
            with contextlib.suppress(WriterError):
                self._write_sidecar(complete=False, error=str(err))
        raise WriterError(
            f"writing {str(self.path)!r} failed after {self.frames} frames: {err}"
            + (
                " The mp4 keeps a playable prefix; write the remaining frames to another path."
                if self.format == "mp4"
                else " No file was left under that name; write the frames to another path."
            )
        ) from err

    def _write_sidecar(self, *, complete: bool, error: str | None = None) -> None:
        assert self.size is not None
        info: dict[str, Any] = {
            "format": self.format,
            "frames": self.frames if complete else None,  # unknown until ffmpeg is done
            "fps": self.fps,
            "width": self.size[1],
            "height": self.size[0],
            "complete": complete,
            **self._settings,
        }
        if self.format == "memmap":
            info.update(shape=[1, self.frames, 3, *self.size], dtype="uint8")
        if error is not None:
            info["error"] = error
        info.update(funrec_version=funrec_version(), metadata=self.metadata)
        write_json(sidecar_path(self.path), info)


class _Sink(Protocol):
    """Where one format's bytes go; ``write`` and ``finish`` raise OSError/WriterError."""

    def write(self, frames: torch.Tensor) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class _FfmpegSink:
    """Pipes raw RGB frames into an ffmpeg process writing mp4, gif or png frames."""

    def __init__(
        self, path: Path, format: str, fps: float, size: tuple[int, int], settings: dict[str, Any]
    ) -> None:
        import imageio_ffmpeg

        self.path = path
        self.temp: Path | None = None
        self.even = False
        if format == "mp4":  # streamed under the final name: fragments are playable
            target = str(path)
            self.even = True
            size = (size[0] + size[0] % 2, size[1] + size[1] % 2)
            out = ["-c:v", settings["codec"]]
            if settings["crf"] is not None:
                out += ["-crf", str(settings["crf"])]
            if settings["preset"] is not None:
                out += ["-preset", settings["preset"]]
            keyint = str(max(1, round(fps)))
            out += ["-pix_fmt", "yuv420p", "-g", keyint, "-movflags", _FRAGMENTED]
            out += ["-flush_packets", "1", "-f", "mp4"]  # each fragment reaches the disk
        elif format == "gif":
            self.temp = temp_beside(path)
            target = str(self.temp)
            # One palette per frame: streams (no whole-video buffering) and stays sharp.
            palette = (
                "split[a][b];[a]palettegen=stats_mode=single:reserve_transparent=0[p];"
                "[b][p]paletteuse=new=1"
            )
            out = ["-vf", palette, "-f", "gif"]
        else:  # png: a folder of 000000.png, 000001.png, ...
            self.temp = temp_beside(path, directory=True)
            target = str(self.temp / "%06d.png")
            out = ["-f", "image2", "-start_number", "0"]
        rate = str(Fraction(fps).limit_denominator(1001))
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[1]}x{size[0]}"]
        cmd += ["-framerate", rate, "-i", "pipe:0", *out, target]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - ffmpeg's stderr
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                start_new_session=True,  # Ctrl-C reaches Python, which then closes ffmpeg
            )
        except OSError:
            self.abort()
            raise

    def write(self, frames: torch.Tensor) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        height, width = frames.shape[-2:]
        if self.even and (height % 2 or width % 2):
            # yuv420p needs even sides: repeat the last row/column (no dark seam)
            frames = torch.nn.functional.pad(frames, (0, width % 2, 0, height % 2), "replicate")
        # funrec's frames are HWC in memory already: then this is a view, not a copy.
        data = frames.permute(0, 2, 3, 1).contiguous().numpy()
        try:
            self.proc.stdin.write(memoryview(data).cast("B"))
        except BrokenPipeError:
            raise WriterError(self._died()) from None

    def finish(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise WriterError(self._died())
        self.log.close()
        if self.temp is not None:
            replace(self.temp, self.path)

    def abort(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if self.temp is not None:
            remove(self.temp)

    def _died(self) -> str:
        assert self.proc is not None
        code = self.proc.wait()
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return f"ffmpeg exited with code {code}: {' | '.join(lines[-5:]) or 'no message'}."


class _PtSink:
    """Keeps the frames and ``torch.save``s uint8 ``[1, T, 3, H, W]`` on finish (like TorchRL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chunks: list[torch.Tensor] = []

    def write(self, frames: torch.Tensor) -> None:
        self.chunks.append(frames.clone())  # the caller may reuse its buffer

    def finish(self) -> None:
        temp = temp_beside(self.path)
        try:
            torch.save(torch.cat(self.chunks)[None], temp)
            replace(temp, self.path)
        except RuntimeError as err:  # how torch.save reports a failed write
            raise WriterError(f"torch.save could not write (is the disk full?): {err}") from err
        finally:
            remove(temp)
        self.chunks = []

    def abort(self) -> None:
        self.chunks = []


class _MemmapSink:
    """Appends raw uint8 ``[T, 3, H, W]`` bytes to a temporary file, renamed on finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp = temp_beside(path)
        self.file = open(self.temp, "wb")  # noqa: SIM115 - closed by finish/abort

    def write(self, frames: torch.Tensor) -> None:
        self.file.write(memoryview(frames.contiguous().numpy()).cast("B"))  # packed [T, 3, H, W]

    def finish(self) -> None:
        self.file.close()
        replace(self.temp, self.path)

    def abort(self) -> None:
        self.file.close()
        remove(self.temp)


def _open_sink(path: Path, format: str, fps: float, size: tuple[int, int], settings: dict) -> _Sink:
    if format == "pt":
        return _PtSink(path)
    if format == "memmap":
        return _MemmapSink(path)
    return _FfmpegSink(path, format, fps, size, settings)


def read_video(path: str | Path) -> torch.Tensor:
    """Reads a video written by funrec (or TorchRL's CSVLogger ``pt``) back into memory.

    mp4, gif and png folders are decoded by ffmpeg (frames are returned as
    decoded: lossy for mp4/gif, exact for png); ``pt`` and ``memmap`` are exact.
    An mp4 whose writer was killed decodes to the prefix it holds.

    Args:
      path: a video file or png folder. The format comes from the sidecar
        ``<path>.json`` when there is one, else from the suffix (a directory is
        a png folder). ``memmap`` needs the sidecar for its shape.

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
    side = sidecar_path(path)
    info = json.loads(side.read_text()) if side.exists() else {}
    format = info.get("format") or ("png" if path.is_dir() else _SUFFIXES.get(path.suffix.lower()))
    if format == "mp4" and info.get("complete") is False:
        # A writer killed before ffmpeg finished its first fragment leaves no file or one
        # without frames: the playable prefix is empty.
        try:
            return _decode(path, format, info["height"], info["width"])
        except OSError:
            return torch.empty(0, 3, info["height"], info["width"], dtype=torch.uint8)
    if not path.exists():
        raise FileNotFoundError(f"read_video: {str(path)!r} does not exist.")
    if format == "pt":
        video = torch.load(path, weights_only=True)
        return video.flatten(0, 1) if video.ndim == 5 else video
    if format == "memmap":
        if "shape" not in info:
            raise ValueError(
                f"read_video({str(path)!r}): a memmap file needs its sidecar {str(side)!r} for "
                "its shape; without it, use tensordict.MemoryMappedTensor.from_filename(path, "
                "torch.uint8, shape)."
            )
        from tensordict import MemoryMappedTensor

        shape = info["shape"]
        return MemoryMappedTensor.from_filename(path, torch.uint8, shape).flatten(0, 1).clone()
    if format in ("mp4", "gif", "png"):
        return _decode(path, format, info.get("height"), info.get("width"))
    raise ValueError(
        f"read_video({str(path)!r}): unknown format; expected a .mp4/.gif/.pt/.memmap file, "
        "a png folder, or a funrec sidecar next to it."
    )


def _decode(path: Path, format: str, height: int | None, width: int | None) -> torch.Tensor:
    import imageio_ffmpeg

    source, before = str(path), []
    if format == "png":
        source, before = str(path / "%06d.png"), ["-f", "image2", "-start_number", "0"]
    reader = imageio_ffmpeg.read_frames(
        source, input_params=before, output_params=["-fps_mode", "passthrough"]
    )
    meta = next(reader)
    w, h = meta["size"]
    frames = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in reader]
    video = torch.stack(frames) if frames else torch.empty(0, dtype=torch.uint8)
    video = video.reshape(-1, h, w, 3).permute(0, 3, 1, 2)
    return video[:, :, : height or h, : width or w].contiguous()
