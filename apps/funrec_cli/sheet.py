"""The contact sheet: thumbnails sampled across a rollout, labelled, in one PNG."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

import funrec

BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)


def sample_steps(steps: int, count: int = 16) -> tuple[int, ...]:
    """``count`` step indices spread evenly over ``range(steps)``, the first and the last included.

    Example:
        >>> sample_steps(100, 5)
        (0, 25, 50, 74, 99)
    """
    count = min(count, steps)
    if count <= 1:
        return (0,)[:steps]
    return tuple(sorted({round(i * (steps - 1) / (count - 1)) for i in range(count)}))


def labels(steps: Sequence[int], episodes: Sequence[funrec.Episode], num_envs: int) -> list[str]:
    """One label per sampled step: the step and the episode each sub-env is in.

    Episodes are numbered per sub-env from 0, as in ``episodes.csv``; a sampled
    step belongs to episode ``k`` of its sub-env when ``k`` episodes of that
    sub-env ended before it. With one env, the episode's return is added, or
    "running" when the rollout ended first.

    Args:
        steps: the sampled step indices.
        episodes: the finished episodes, in the order they finished.
        num_envs: the number of sub-envs.

    Returns:
        ``["step 0 · ep 0 · return 21", ...]``.
    """
    per_env = [[e for e in episodes if e.env == env] for env in range(num_envs)]
    ends = [list(itertools.accumulate(e.length for e in eps)) for eps in per_env]
    out = []
    for step in steps:
        current = [bisect.bisect_right(end, step) for end in ends]
        if num_envs > 1:
            out.append(f"step {step} · ep {','.join(map(str, current))}")
            continue
        k = current[0]
        ret = f"return {per_env[0][k].total_reward:g}" if k < len(per_env[0]) else "running"
        out.append(f"step {step} · ep {k} · {ret}")
    return out


def contact_sheet(
    frames: torch.Tensor,
    captions: Sequence[str],
    title: str,
    *,
    columns: int = 4,
    width: int = 240,
) -> Image.Image:
    """A grid of labelled thumbnails under a title line.

    Args:
        frames: uint8 ``[M, 3, H, W]``, or ``[M, N, 3, H, W]`` for a batched env
            (each step's sub-env frames are tiled with ``funrec.grid``).
        captions: one caption per frame, printed under its thumbnail.
        title: the line above the grid.
        columns: thumbnails per row.
        width: the width of a thumbnail in pixels.

    Returns:
        An RGB ``PIL.Image``; save it with ``.save("contact_sheet.png")``.
    """
    if frames.ndim == 5:
        frames = funrec.grid(frames)
    count, _, h, w = frames.shape
    height = max(1, round(h * width / w))
    font = ImageFont.load_default(size=14)
    title_font = ImageFont.load_default(size=17)
    pad, caption, header = 8, 22, 34
    columns = min(columns, count)
    rows = -(-count // columns)
    sheet = Image.new(
        "RGB",
        (pad + columns * (width + pad), header + rows * (height + caption + pad)),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, pad), _fit(draw, title, sheet.width - 2 * pad, title_font), TEXT, title_font)
    hwc = frames.permute(0, 2, 3, 1).contiguous().numpy()
    for i, (image, text) in enumerate(zip(hwc, captions, strict=True)):
        x = pad + (i % columns) * (width + pad)
        y = header + (i // columns) * (height + caption + pad)
        thumb = Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x, y))
        draw.text((x, y + height + 3), _fit(draw, text, width, font), TEXT, font)
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font: ImageFont.ImageFont) -> str:
    """``text``, cut and ended with an ellipsis if it is wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
