"""File helpers shared by the writers: atomic replacement, JSON sidecars, errors."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any


class WriterError(RuntimeError):
    """A writer could not put its data on disk (I/O failure, ffmpeg failure, disk full)."""


def temp_beside(path: Path, *, directory: bool = False) -> Path:
    """A fresh hidden temporary name in ``path``'s directory, so ``os.replace`` stays atomic.

    Raises :class:`WriterError` naming the directory when it cannot be written.
    """
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        while True:
            temp = parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                # Not tempfile's 0600: the umask decides, as for any file the user writes.
                if directory:
                    temp.mkdir()
                else:
                    os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                return temp
            except FileExistsError:
                continue
    except OSError as err:
        raise WriterError(
            f"cannot write {str(path)!r}: its directory {str(parent)!r} is not writable "
            f"({err.strerror or err}); choose a writable directory."
        ) from err


def replace(temp: Path, path: Path) -> None:
    """Moves ``temp`` to ``path`` in one rename; an existing directory there is swapped out."""
    if path.is_dir() and not path.is_symlink():
        old = temp_beside(path, directory=True)
        os.replace(path, old)
        os.replace(temp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temp, path)


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
