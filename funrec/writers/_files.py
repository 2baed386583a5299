"""File helpers shared by the writers: partial names, atomic finishing, JSON sidecars, errors.

One protocol for every file a writer makes: bytes go to a *partial* file with a
unique name beside the target (``clip.<token>.partial.mp4``), which never
clobbers a finished file or another run's partial; :func:`finish` moves the
finished partial onto the target in one rename. A crash or a failure leaves the
partial where it is, readable (``read_video``) and listed by :func:`partials`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import secrets
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

MIN_FPS, MAX_FPS = 1e-3, 1e3


class WriterError(RuntimeError):
    """A writer could not put its data on disk (I/O failure, ffmpeg failure, disk full).

    Nothing a writer took is dropped: it is either in the file ``path`` (``written``
    frames, which ``read_video(path)`` reads) or handed back in ``unwritten``.

    Attributes:
      path: the file holding what was written (a partial file), or None.
      written: how many frames ``path`` holds.
      unwritten: uint8 ``[N, 3, H, W]``: frames the writer took that are not in
        ``path``, in order; None when there are none.
      state: set by ``write_drained``: the recorder state it was given, which still
        holds the items of the call that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        written: int = 0,
        unwritten: torch.Tensor | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.written = written
        self.unwritten = unwritten
        self.state: Any = None


def check_fps(fps: Any, where: str) -> float:
    """Checks a frame rate and returns it as a float.

    Args:
      fps: a real number (Python, numpy or a 0-d tensor) in [0.001, 1000].
      where: who asks, for the message (e.g. ``"open_video('v.mp4')"``).

    Returns:
      ``fps`` as a Python float.

    Raises:
      ValueError: ``fps`` is not a number, not finite, or out of range.

    Example:
      >>> check_fps(torch.tensor(30), "open_video")
      30.0
    """
    if isinstance(fps, torch.Tensor) and fps.ndim == 0 and not fps.is_complex():
        fps = fps.item()
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise ValueError(
            f"{where}: fps={fps!r} is a {type(fps).__name__}; pass a number, e.g. fps=30."
        )
    value = float(fps)
    if not (math.isfinite(value) and MIN_FPS <= value <= MAX_FPS):
        raise ValueError(
            f"{where}: fps={fps!r}; pass a finite frame rate between {MIN_FPS} and {MAX_FPS:g} "
            "frames per second."
        )
    return value


def temp_beside(path: Path, *, directory: bool = False) -> Path:
    """A fresh hidden temporary name in ``path``'s directory (for small files such as sidecars).

    Raises :class:`WriterError` naming the directory when it cannot be written.
    """
    return _create(path, lambda token: f".{path.name}.{token}.tmp", directory)


def partial_beside(path: Path, *, directory: bool = False) -> Path:
    """Creates a unique partial file (or folder) for ``path``: ``<stem>.<token>.partial<suffix>``.

    Raises :class:`WriterError` naming the directory when it cannot be written.
    """
    return _create(path, lambda token: f"{path.stem}.{token}.partial{path.suffix}", directory)


def partials(path: str | Path) -> list[Path]:
    """The partial files of ``path`` (unfinished or failed writes), oldest first.

    Args:
      path: the target a writer was writing, e.g. ``"videos/run_0.mp4"``.

    Returns:
      The paths ``<stem>.<token>.partial<suffix>`` beside it, by modification time.

    Example:
      >>> partials("/nonexistent/run_0.mp4")
      []
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    name = re.compile(rf"{re.escape(path.stem)}\.[0-9a-f]{{8}}\.partial{re.escape(path.suffix)}")
    found = [p for p in path.parent.iterdir() if name.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a video: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def finish(partial: Path, path: Path, sidecar: dict[str, Any]) -> None:
    """Puts a finished partial at ``path``, with its sidecar, replacing what was there.

    The sidecar is written first: if that fails (a full disk), the partial and its
    own sidecar stay as they were. Then one rename makes the video appear whole.
    """
    write_json(sidecar_path(path), sidecar)
    replace(partial, path)
    sidecar_path(partial).unlink(missing_ok=True)


def _create(path: Path, name: Any, directory: bool) -> Path:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        while True:
            candidate = parent / name(secrets.token_hex(4))
            try:
                # Not tempfile's 0600: the umask decides, as for any file the user writes.
                if directory:
                    candidate.mkdir()
                else:
                    os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                return candidate
            except FileExistsError:
                continue
    except OSError as err:
        raise WriterError(
            f"cannot write {str(path)!r}: its directory {str(parent)!r} is not writable "
            f"({err.strerror or err}); choose a writable directory."
        ) from err


def save_beside(obj: Any, path: Path) -> Path:
    """``torch.save`` s ``obj`` under a fresh temporary name beside ``path``; returns that name.

    Rename it onto ``path`` with :func:`replace` (or :func:`finish`) to publish it whole.

    Raises:
      WriterError: the save failed (e.g. a full disk); the temporary file is removed.
    """
    temp = temp_beside(path)
    try:
        torch.save(obj, temp)
    except (RuntimeError, OSError) as err:  # RuntimeError: how torch.save reports a failed write
        temp.unlink(missing_ok=True)
        raise WriterError(
            f"cannot write {str(path)!r}: torch.save failed ({err}); is the disk full?"
        ) from err
    return temp


def save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` s ``obj`` to ``path`` atomically: the file appears whole or not at all.

    The bytes go to a unique temporary name beside ``path``, renamed onto it once
    saved; a concurrent save to the same path never mixes with this one.

    Args:
      obj: anything ``torch.save`` takes.
      path: the file to write (replaced if it exists).

    Returns:
      ``path``.

    Raises:
      WriterError: the save failed (e.g. a full disk); ``path`` is as it was.

    Example:
      >>> import torch
      >>> save(torch.ones(2), "/tmp/funrec-doc-save.t").name
      'funrec-doc-save.t'
    """
    path = Path(path)
    temp = save_beside(obj, path)
    try:
        replace(temp, path)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise WriterError(f"cannot write {str(path)!r}: {err.strerror or err}.") from err
    return path


def replace(source: Path, path: Path) -> None:
    """Moves ``source`` to ``path`` in one rename; a directory replaces a directory whole."""
    if source.is_dir() and path.is_dir() and not path.is_symlink():
        old = temp_beside(path, directory=True)
        os.replace(path, old)
        os.replace(source, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, path)


def remove(path: Path) -> None:
    """Removes a file or directory if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically (temporary name, then rename)."""
    temp = temp_beside(path)
    try:
        temp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
        os.replace(temp, path)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise WriterError(f"cannot write {str(path)!r}: {err.strerror or err}.") from err


def funrec_version() -> str:
    """The installed funrec version, or ``"unknown"`` when running from an uninstalled tree."""
    try:
        return metadata.version("funrec")
    except metadata.PackageNotFoundError:
        return "unknown"
