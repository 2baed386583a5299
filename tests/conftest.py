"""Shared test setup: Hypothesis profiles (funrec's plugin), headless rendering, frames."""

import os

import torch
from tensordict import TensorDict

# The "ci" and "dev" Hypothesis profiles, and which one loads: funrec's own plugin.
pytest_plugins = ["funrec.testing.pytest_plugin"]

# pygame (gymnasium's classic-control rendering) must not look for a display.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# Ray (imported by torchrl.collectors) reads this once, at import: 0 keeps every listener of
# the local Ray the tests start on 127.0.0.1 instead of every interface (test_workers_ray.py).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def stamped_frame(index: int, height: int = 6, width: int = 8) -> torch.Tensor:
    """A uint8 HWC frame that carries ``index`` in its pixels (red: low byte, green: high)."""
    frame = torch.zeros(height, width, 3, dtype=torch.uint8)
    frame[..., 0] = index % 256
    frame[..., 1] = index // 256
    return frame


def frame_index(frame: torch.Tensor) -> int:
    """The index that :func:`stamped_frame` wrote into a ``[3, H, W]`` frame."""
    return int(frame[0, 0, 0]) + 256 * int(frame[1, 0, 0])


def pixel_steps(n: int, start: int = 0) -> list[TensorDict]:
    """``n`` one-step TensorDicts whose ``"pixels"`` are stamped ``start, start+1, ...``."""
    return [TensorDict({"pixels": stamped_frame(i)}) for i in range(start, start + n)]
