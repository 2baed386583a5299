"""Pure operations on recorded frames (uint8 ``[..., 3, H, W]``): stacking, grids, crops.

Each rule about how frames become a video lives here once: the recorders crop
and resize with these before frames are held, and every writer and adapter
turns drained frames into a clip with :func:`clip`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from funrec.errors import RecorderError

__all__ = ["center_crop", "clip", "grid", "resize", "stack_frames"]

Size = int | tuple[int, int]


def size_pair(size: Size, name: str) -> tuple[int, int]:
    """``(height, width)`` from an int or a pair, or a RecorderError naming ``name``."""
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in pair)
    ):
        raise RecorderError(
            f"{name} must be a positive int or a (height, width) pair of positive ints, "
            f"got {size!r}."
        )
    return int(pair[0]), int(pair[1])


def center_crop(frames: torch.Tensor, size: Size) -> torch.Tensor:
    """The central ``size`` window of every image, as torchvision's ``center_crop``.

    The window's top-left corner is ``round((H - h) / 2), round((W - w) / 2)``
    (Python's rounding, half to even). A window larger than the image pads it
    with zeros first: ``(h - H) // 2`` rows on top, the rest below, and likewise
    for columns.

    Args:
        frames: ``[..., H, W]``.
        size: ``h`` for a square window, or ``(h, w)``.

    Returns:
        ``[..., h, w]``: a view when the window fits, else a padded copy.

    Example:
        >>> center_crop(torch.arange(25).reshape(5, 5), 2).tolist()
        [[12, 13], [17, 18]]
    """
    h, w = size_pair(size, "center_crop size")
    height, width = frames.shape[-2:]
    if h > height or w > width:
        top, left = max(h - height, 0), max(w - width, 0)
        pad = (left // 2, (left + 1) // 2, top // 2, (top + 1) // 2)
        frames = torch.nn.functional.pad(frames, pad)
        height, width = frames.shape[-2:]
    top, left = round((height - h) / 2), round((width - w) / 2)
    return frames[..., top : top + h, left : left + w]


def resize(frames: torch.Tensor, size: Size) -> torch.Tensor:
    """Resizes uint8 frames ``[..., 3, H, W]`` to ``size`` (bilinear, antialiased).

    Args:
        frames: uint8 ``[..., 3, H, W]``.
        size: ``(h, w)``, or ``s`` for ``(s, s)``.

    Returns:
        A fresh uint8 ``[..., 3, h, w]``.

    Example:
        >>> resize(torch.zeros(3, 64, 48, dtype=torch.uint8), (32, 24)).shape
        torch.Size([3, 32, 24])
    """
    h, w = size_pair(size, "resize size")
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:]).float()
    out = torch.nn.functional.interpolate(
        flat, size=(h, w), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8).reshape(*lead, 3, h, w)


def grid(frames: torch.Tensor) -> torch.Tensor:
    """Tiles a batch of frames into one frame, row by row, as TorchRL's VideoRecorder does.

    ``N`` frames make ``ceil(sqrt(N))`` columns and as many rows as needed; the
    empty tiles of the last row are black.

    Args:
        frames: ``[..., N, 3, H, W]``, e.g. a batched video ``[T, N, 3, H, W]``.

    Returns:
        ``[..., 3, rows * H, cols * W]``.

    Example:
        >>> grid(torch.zeros(16, 3, 40, 60, dtype=torch.uint8)).shape
        torch.Size([3, 160, 240])
    """
    *lead, n, c, h, w = frames.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = frames.new_zeros(*lead, rows * cols - n, c, h, w)
    tiles = torch.cat([frames, pad], dim=-4).reshape(*lead, rows, cols, c, h, w)
    tiles = tiles.movedim(-3, -5)  # [..., c, rows, cols, h, w]
    return tiles.transpose(-2, -3).reshape(*lead, c, rows * h, cols * w)


def stack_frames(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stacks frames ``[..., 3, H, W]`` into ``[T, ..., 3, H, W]``, in their memory order.

    Recorded frames keep their input's channel position in memory (an HWC frame
    is a channels-last view), so they are stacked channels-last: one straight
    copy, and writers read the result as HWC without another. A single frame
    comes back as a view.

    Args:
        frames: one or more frames of one shape, as ``drain`` hands them out.

    Returns:
        ``[T, ..., 3, H, W]``; equal, value for value, to ``torch.stack(frames)``.

    Example:
        >>> hwc = torch.zeros(4, 6, 3, dtype=torch.uint8)
        >>> stack_frames([hwc.movedim(-1, -3)] * 5).shape
        torch.Size([5, 3, 4, 6])
    """
    if len(frames) == 1:
        return frames[0][None]
    return torch.stack([f.movedim(-3, -1) for f in frames]).movedim(-1, -3)


def clip(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """The video of drained frames: stacked, and a batch tiled into one grid image per step.

    The one place that decides how a batched stream becomes a video: frames
    ``[*batch, 3, H, W]`` with batch dims are tiled with :func:`grid`.

    Args:
        frames: frames of one stream as ``drain`` hands them out (uint8
            ``[3, H, W]`` or ``[*batch, 3, H, W]``).

    Returns:
        uint8 ``[T, 3, H, W]``; ``[0, 3, 0, 0]`` when there are no frames.

    Example:
        >>> clip([torch.zeros(4, 3, 8, 8, dtype=torch.uint8)] * 2).shape
        torch.Size([2, 3, 16, 16])
    """
    if not frames:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    video = stack_frames(frames)
    return grid(video.flatten(1, -4)) if video.ndim > 4 else video
