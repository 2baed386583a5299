"""Hypothesis strategies for frames, layouts and rollouts, to property-test pipelines.

Import this module from tests only: it needs ``hypothesis`` (a dev dependency),
which ``import funrec`` never loads.

Every parameter below takes a value, a Hypothesis strategy of values, or ``None``
for "any supported value". Pixel values are exact: float [0, 1] frames hold
``k / 255`` and float [0, 255] frames hold whole numbers, so
``funrec.layout.normalize`` gives back the uint8 image they were made from.

Example:
  >>> import funrec
  >>> from hypothesis import given
  >>> from funrec.testing import strategies as fst
  >>> @given(fst.rollouts(batch_size=(2,)))
  ... def test_every_frame_is_kept(steps):
  ...     assert funrec.video(funrec.fold(funrec.frames(), steps)).shape[0] == len(steps)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeAlias, TypeVar

import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp
from tensordict import TensorDict

from funrec.layout import CHANNELS, ORDERS, Layout

__all__ = ["DTYPES", "images", "images_for", "layouts", "rollouts", "steps"]

T = TypeVar("T")
Param: TypeAlias = "T | st.SearchStrategy[T] | None"

DTYPES = (
    "uint8",
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
)
_FLOATS = ("float16", "bfloat16", "float32", "float64")


def _strategy(value: Any, default: st.SearchStrategy) -> st.SearchStrategy:
    if value is None:
        return default
    if isinstance(value, st.SearchStrategy):
        return value
    return st.just(value)


def _detectable(layout: Layout) -> bool:
    """True when ``funrec.layout.detect`` finds ``layout.order`` without a hint."""
    if layout.order == "HW":
        return layout.batch_shape == ()
    if layout.order == "HWC":
        return layout.height not in CHANNELS
    return layout.width not in CHANNELS


@st.composite
def layouts(
    draw: st.DrawFn,
    order: Param[str] = None,
    channels: Param[int] = None,
    dtype: Param[str] = None,
    batch_shape: Param[tuple[int, ...]] = None,
    *,
    max_side: int = 12,
    detectable: bool = True,
) -> Layout:
    """A strategy of :class:`~funrec.layout.Layout` values.

    Args:
      order: ``"HWC"``, ``"CHW"`` or ``"HW"``.
      channels: 1, 3 or 4 (always 1 for ``"HW"``).
      dtype: a torch dtype name from :data:`DTYPES`.
      batch_shape: the leading batch dims; by default ``()``, ``(n,)`` or ``(n, m)``
        with sides up to 3.
      max_side: the largest height and width.
      detectable: only layouts that ``detect`` finds without a hint (no ambiguous
        shapes, no batched ``"HW"``).

    Returns:
      A strategy of layouts whose dtype and scale agree (bool: 255, integers: 1,
      floats: either).

    Example:
      >>> layouts(order="CHW", dtype="float32").example().order
      'CHW'
    """
    shapes = st.lists(st.integers(1, 3), max_size=2).map(tuple)
    if detectable and order == "HW":
        shapes = st.just(())
    batch = draw(_strategy(batch_shape, shapes))
    orders = ORDERS if batch == () or not detectable else ("HWC", "CHW")
    drawn_order: str = draw(_strategy(order, st.sampled_from(orders)))
    default_channels = st.just(1) if drawn_order == "HW" else st.sampled_from(CHANNELS)
    drawn_channels: int = draw(_strategy(channels, default_channels))
    drawn_dtype: str = draw(_strategy(dtype, st.sampled_from(DTYPES)))
    if drawn_dtype == "bool":
        scale = 255
    elif drawn_dtype in _FLOATS:
        scale = draw(st.sampled_from((1, 255)))
    else:
        scale = 1
    sides = st.integers(1, max_side)
    height, width = draw(sides), draw(sides)
    layout = Layout(batch, drawn_order, drawn_channels, height, width, drawn_dtype, scale)
    if detectable and not _detectable(layout):
        if layout.order == "HW":
            raise InvalidArgument("a batched 'HW' layout needs a hint; pass detectable=False")
        # Redraw the one side that decides ambiguity rather than filter whole layouts.
        side = draw(sides.filter(lambda s: s not in CHANNELS))
        layout = (
            replace(layout, height=side) if layout.order == "HWC" else replace(layout, width=side)
        )
    return layout


@st.composite
def images_for(draw: st.DrawFn, layout: Layout) -> torch.Tensor:
    """A strategy of frames (torch tensors) that fit ``layout``.

    A frame drawn here has ``layout.shape`` and ``layout.dtype``, and
    ``detect(frame)`` gives ``layout`` back when the layout is detectable (a float
    [0, 255] frame always holds a value above 1, so its scale is found).

    Args:
      layout: the layout to fit.

    Returns:
      A strategy of CPU tensors.

    Example:
      >>> images_for(Layout((), "HW", 1, 8, 8, "uint8", 1)).example().shape
      torch.Size([8, 8])
    """
    high = 127 if layout.dtype == "int8" else 255
    pixels = torch.from_numpy(
        draw(hnp.arrays("uint8", layout.shape, elements=st.integers(0, high)))
    )
    dtype = getattr(torch, layout.dtype)
    if layout.dtype == "bool":
        return pixels >= 128
    if layout.dtype not in _FLOATS:
        return pixels.to(dtype)
    if layout.scale == 255:
        return (pixels.double() / 255).to(dtype)
    if pixels.max() <= 1:
        pixels.view(-1)[draw(st.integers(0, pixels.numel() - 1))] = draw(st.integers(2, 255))
    return pixels.to(dtype)


def images(
    order: Param[str] = None,
    channels: Param[int] = None,
    dtype: Param[str] = None,
    batch_shape: Param[tuple[int, ...]] = None,
    *,
    max_side: int = 12,
    detectable: bool = True,
) -> st.SearchStrategy[torch.Tensor]:
    """A strategy of frames of any supported layout (torch tensors).

    Args:
      order: ``"HWC"``, ``"CHW"`` or ``"HW"``.
      channels: 1, 3 or 4.
      dtype: a torch dtype name from :data:`DTYPES`.
      batch_shape: the leading batch dims.
      max_side: the largest height and width.
      detectable: only frames whose layout ``detect`` finds without a hint.

    Returns:
      A strategy of CPU tensors; convert with ``.numpy()`` or ``jax.numpy.asarray``
      to test other array kinds.

    Example:
      >>> images(order="HWC", channels=3, dtype="uint8").example().shape[-1]
      3
    """
    found = layouts(order, channels, dtype, batch_shape, max_side=max_side, detectable=detectable)
    return found.flatmap(images_for)


@st.composite
def rollouts(
    draw: st.DrawFn,
    layout: Param[Layout] = None,
    batch_size: Param[tuple[int, ...]] = None,
    *,
    min_steps: int = 1,
    max_steps: int = 20,
) -> list[TensorDict]:
    """A strategy of rollouts: lists of one-step TensorDicts, as ``env.rollout`` steps.

    Each TensorDict has batch size ``batch_size`` and holds ``"pixels"`` (a frame of
    ``layout``), ``("next", "reward")`` (float32 ``[*batch, 1]``) and
    ``("next", "done")`` (bool ``[*batch, 1]``). Every sub-env ends its episodes at
    its own steps; the last episode of a sub-env may be unfinished.

    Args:
      layout: the frame layout; by default a detectable layout of that batch size.
      batch_size: the batch size; by default ``()``, ``(n,)`` or ``(n, m)``. Ignored
        when ``layout`` is given (its ``batch_shape`` is used).
      min_steps: the fewest steps.
      max_steps: the most steps.

    Returns:
      A strategy of lists of TensorDicts.

    Example:
      >>> steps = rollouts(batch_size=(3,), max_steps=5).example()
      >>> steps[0]["next", "done"].shape
      torch.Size([3, 1])
    """
    if layout is None:
        batch = draw(_strategy(batch_size, st.lists(st.integers(1, 3), max_size=2).map(tuple)))
        layout = layouts(batch_shape=batch)
    drawn: Layout = draw(_strategy(layout, st.nothing()))
    batch = drawn.batch_shape
    n = draw(st.integers(min_steps, max_steps))
    return [draw(steps(drawn)) for _ in range(n)]


@st.composite
def steps(draw: st.DrawFn, layout: Layout, done: torch.Tensor | None = None) -> TensorDict:
    """A strategy of one env step's TensorDict, as :func:`rollouts` draws them.

    Args:
      layout: the frame layout; its ``batch_shape`` is the batch size.
      done: bool ``[*batch]``, which sub-envs end their episode at this step;
        drawn when None.

    Returns:
      A strategy of TensorDicts holding ``"pixels"``, ``("next", "reward")``
      (float32 ``[*batch, 1]``) and ``("next", "done")`` (bool ``[*batch, 1]``).

    Example:
      >>> layout = Layout((2,), "HWC", 3, 4, 4, "uint8", 1)
      >>> steps(layout, done=torch.tensor([True, False])).example()["next", "done"].tolist()
      [[True], [False]]
    """
    batch = layout.batch_shape
    rewards = st.floats(-10, 10, allow_nan=False, width=32)
    reward = torch.from_numpy(draw(hnp.arrays("float32", (*batch, 1), elements=rewards)))
    if done is None:
        done = torch.from_numpy(draw(hnp.arrays("bool", batch)))
    return TensorDict(
        {
            "pixels": draw(images_for(layout)),
            "next": {"reward": reward, "done": done.reshape(*batch, 1)},
        },
        batch_size=batch,
    )
