"""Helpers for the fault tests: incompressible frames, a real small disk, ffmpeg processes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import psutil
import pytest
import torch
from tensordict import TensorDict

ROOT = Path(__file__).resolve().parent.parent


def noise(steps: int, height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    """Incompressible frames (they fill a small disk fast): uint8 [T, 3, H, W]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (steps, 3, height, width), dtype=torch.uint8, generator=generator)


def frame_steps(video: torch.Tensor) -> list[TensorDict]:
    return [TensorDict({"pixels": frame}) for frame in video]  # CHW, read as such


def assert_frames_of(decoded: torch.Tensor, video: torch.Tensor, start: int = 0) -> None:
    """Decoded frame ``t`` is ``video[start + t]``: the closest of its neighbours (lossy)."""
    assert start + len(decoded) <= len(video)
    for t in range(len(decoded)):
        near = range(max(0, start + t - 3), min(len(video), start + t + 4))
        errors = [(decoded[t].float() - video[i].float()).abs().mean() for i in near]
        assert near[int(torch.stack(errors).argmin())] == start + t, (t, start)


def mount_tmpfs(directory: Path, options: str) -> bool:
    """Mounts a tmpfs on a new ``directory`` (root only); False when that is not possible."""
    directory.mkdir()
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return False
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)]
    return subprocess.run(command, capture_output=True).returncode == 0


@contextlib.contextmanager
def small_disk(directory: Path, size: str = "2m"):
    """A real full disk: a tmpfs of ``size`` mounted on ``directory`` (skips if not root)."""
    if not mount_tmpfs(directory, f"size={size}"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def ctrl_c_reaches_it() -> None:
    """A ``preexec_fn``: the child takes SIGINT as Ctrl-C even when the test run ignores it
    (under ``nohup``, say, whose ignored SIGINT a child would inherit)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_python(script: str, *args: object, stdin: int | None = None) -> subprocess.Popen:
    """Starts ``python -c script *args`` in the repository; its stdout is a text pipe."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=ctrl_c_reaches_it,
    )


def wait_for(condition, what: str, limit: float = 120.0):
    """Polls ``condition`` until it returns something true, and returns that.

    ``limit`` is a liveness bound, not a timing assertion.
    """
    end = time.monotonic() + limit
    while not (found := condition()):
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)
    return found


def fragments(path: Path | None) -> int:
    """How many complete fragments an mp4 holds so far (a ``moof`` box is written with its data)."""
    return path.read_bytes().count(b"moof") if path is not None and path.exists() else 0


def ffmpeg_writing(path: Path, parent: psutil.Process | None = None) -> psutil.Process:
    """The ffmpeg child process (of ``parent``, default this one) whose output is ``path``."""
    parent = parent or psutil.Process()

    def look() -> psutil.Process | None:  # polled: one lookup came back empty once in CI
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "ffmpeg" in child.name() and any(str(path) in arg for arg in child.cmdline()):
                    return child
        return None

    return wait_for(look, f"an ffmpeg writing {path}", limit=30)


def kill_both_after_a_fragment(child: subprocess.Popen, partial: Path) -> None:
    """Once ``partial`` holds an mp4 fragment, SIGKILLs ``child`` and its ffmpeg (as the OOM
    killer would the whole tree) and reaps both."""
    ffmpeg = ffmpeg_writing(partial, psutil.Process(child.pid))
    try:
        wait_for(lambda: fragments(partial) >= 1, "a complete mp4 fragment")
    finally:  # killed even when the wait gives up: a failed test leaves no process behind
        ffmpeg.kill()
        child.kill()
        child.wait()
        ffmpeg.wait()


def pipe_is_full(ffmpeg: psutil.Process) -> bool:
    """Whether ffmpeg's stdin pipe is full (its writer then blocks in the middle of a frame)."""
    with open(f"/proc/{ffmpeg.pid}/fd/0", "rb", buffering=0) as pipe:
        capacity = fcntl.fcntl(pipe, 1032)  # F_GETPIPE_SZ
        waiting = fcntl.ioctl(pipe, termios.FIONREAD, b"\0\0\0\0")
        # Full: no free page left. A page ffmpeg has read part of stays in use, so a large
        # pipe (the writer asks for 1 MiB) can block its writer with up to a page unfilled.
        return capacity - int.from_bytes(waiting, sys.byteorder) <= 4096
