"""A video target laid out like TorchRL's CSVLogger: ``<root>/videos/<name>_<step>.<ext>``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from funrec.writers._files import check_fps
from funrec.writers.video import FORMATS, open_video

__all__ = ["VideoDirectory"]


class VideoDirectory:
    """Writes each logged video to ``<root>/videos/<name>_<step>.<ext>``, as CSVLogger does.

    It has TorchRL's ``Logger.log_video(name, video, step, **kwargs)`` signature,
    so it stands in for a logger wherever only videos are logged, and it writes
    mp4 without torchcodec.

    Args:
      root: the experiment directory (created if missing).
      format: ``"mp4"`` (default), ``"gif"``, ``"png"`` (a folder per video),
        ``"pt"`` or ``"memmap"``.
      fps: frames per second (in [0.001, 1000]), unless a ``log_video`` call passes ``fps=``.
      **video_kwargs: defaults for :func:`open_video` (``crf``, ``preset``,
        ``codec``, ``metadata``).

    Example:
      >>> import tempfile, torch
      >>> from funrec.writers import VideoDirectory, read_video
      >>> target = VideoDirectory(tempfile.mkdtemp(), fps=10)
      >>> path = target.log_video("pixels", torch.zeros(1, 3, 3, 16, 16, dtype=torch.uint8))
      >>> path.name, read_video(path).shape
      ('pixels_0.mp4', torch.Size([3, 3, 16, 16]))
    """

    def __init__(
        self, root: str | Path, *, format: str = "mp4", fps: float = 30, **video_kwargs: Any
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"VideoDirectory: format={format!r}; use one of {FORMATS}.")
        fps = check_fps(fps, f"VideoDirectory({str(root)!r})")
        self.root = Path(root)
        self.format = format
        self.video_kwargs = {"fps": fps, **video_kwargs}
        self._counters: dict[str, int] = defaultdict(int)

    def log_video(
        self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any
    ) -> Path:
        """Writes one video.

        Args:
          name: the tag; the file is ``videos/<name>_<step>.<ext>``.
          video: uint8 ``[T, C, H, W]`` or ``[N, T, C, H, W]`` with ``C`` in (1, 3)
            (TorchRL's ``[1, T, C, H, W]``); the ``N`` clips are written one after
            the other, as CSVLogger does.
          step: the step in the file name; by default 0, 1, 2... per name.
          **kwargs: :func:`open_video` arguments for this video (e.g. ``fps``); the
            CSVLogger spellings are understood too (see :func:`from_csvlogger`).

        Returns:
          The path written.
        """
        if not isinstance(video, torch.Tensor) or video.ndim not in (4, 5):
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(
                f"log_video({name!r}): expected a uint8 video [T, C, H, W] or [N, T, C, H, W], "
                f"got {shape}; stack the frames along a first time dim."
            )
        if step is None:
            step = self._counters[name]
            self._counters[name] += 1
        suffix = "" if self.format == "png" else f".{self.format}"
        path = self.root / "videos" / f"{name}_{step}{suffix}"
        options = from_csvlogger({**self.video_kwargs, **kwargs}, f"log_video({name!r})")
        with open_video(path, format=self.format, **options) as writer:
            writer.write(video.flatten(0, 1) if video.ndim == 5 else video)
        return path

    def __repr__(self) -> str:
        return f"VideoDirectory({str(self.root)!r}, format={self.format!r})"


# The encoder options TorchRL's CSVLogger passes as strings, and their types here.
_CSV_OPTIONS: dict[str, type] = {"crf": int, "preset": str, "threads": int}


def from_csvlogger(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """:func:`open_video` arguments from TorchRL CSVLogger's spellings of them.

    Args:
      kwargs: video arguments as CSVLogger takes them: ``video_codec=`` and
        ``options={"crf": "17", "preset": "fast", "threads": "1"}`` (strings or
        numbers); every other key passes through.
      where: who asks, for the error message.

    Returns:
      The arguments with ``codec=`` and typed ``crf=``/``preset=``/``threads=``.

    Raises:
      ValueError: an option funrec's writer does not take, named.

    Example:
      >>> from_csvlogger({"fps": 30, "options": {"crf": "17"}}, "log_video")
      {'fps': 30, 'crf': 17}
    """
    out = dict(kwargs)
    if "video_codec" in out:
        out["codec"] = out.pop("video_codec")
    options = dict(out.pop("options", None) or {})
    unknown = sorted(set(options) - set(_CSV_OPTIONS))
    if unknown:
        raise ValueError(
            f"{where}: options {unknown} cannot be passed to funrec's writer; it takes "
            f"options with keys {sorted(_CSV_OPTIONS)}."
        )
    out.update({key: _CSV_OPTIONS[key](value) for key, value in options.items()})
    return out
