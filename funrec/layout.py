"""Frame layouts: decide once how to read a frame, then convert every frame exactly.

A :class:`Layout` is a small frozen value that says how a frame is laid out: its
batch shape, the order of its image dims (``"HWC"``, ``"CHW"`` or ``"HW"``), its
number of channels, its size, its dtype and its value scale. :func:`detect` decides
it from the first frame of a stream (the ``frames()`` recorder caches it in its
state); :func:`normalize` turns any frame that fits it into a fresh
``uint8`` CPU tensor ``[*batch, 3, H, W]``.

Detection rule (see docs/layouts.md):

* A channel dim holds 1, 3 or 4 channels; image sides are >= 1 (no minimum).
* A frame of rank >= 3 reads as ``HWC`` if its last dim is a channel count, and as
  ``CHW`` if its third-to-last dim is one. Everything before the image dims is batch.
* A frame of rank 2 reads as ``HW`` (one grayscale image).
* Exactly one reading: that is the layout. Two readings (``HWC`` and ``CHW``): the
  frame is ambiguous and :class:`LayoutError` lists both. No reading: LayoutError.
  A hint (``"HWC"``, ``"CHW"``, ``"HW"`` or a ``Layout``) replaces the rule; batched
  grayscale ``[*batch, H, W]`` is only read with the hint ``"HW"``.
* Scale: integer frames have scale 1 (values must lie in [0, 255]); bool frames scale
  255 (False -> 0, True -> 255); float frames are decided on the first frame: if its
  largest finite value is <= 1 the stream is [0, 1] (scale 255), else [0, 255]
  (scale 1). A later dark frame of a [0, 255] stream is not rescaled.

The value rules (:func:`first_scale`, :func:`in_range`, :func:`to_uint8`,
:func:`count_out_of_range`) are arithmetic on numpy, torch and jax arrays alike,
traced ones included: ``funrec_jax`` runs them inside ``jax.jit``. They branch on
a frame's dtype (static), never on its values.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from tensordict import NonTensorData, NonTensorStack

from funrec.errors import RecorderError
from funrec.rules import pick

__all__ = [
    "CHANNELS",
    "ORDERS",
    "Layout",
    "LayoutError",
    "as_tensor",
    "check_hint",
    "count_out_of_range",
    "detect",
    "first_scale",
    "in_range",
    "normalize",
    "out_of_range",
    "scale_warning",
    "to_uint8",
]

ORDERS = ("HWC", "CHW", "HW")
CHANNELS = (1, 3, 4)

_INT_DTYPES = {
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
}
_FLOAT_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64}
_DTYPES = {torch.uint8, torch.bool} | _INT_DTYPES | _FLOAT_DTYPES
_DTYPE_NAMES = sorted(str(d).removeprefix("torch.") for d in _DTYPES)
_INT_NAMES = ["uint8", *(str(d).removeprefix("torch.") for d in _INT_DTYPES)]
_FLOAT_NAMES = {str(d).removeprefix("torch.") for d in _FLOAT_DTYPES}


class LayoutError(RecorderError):
    """A frame whose layout cannot be decided or does not fit the stream's layout."""


@dataclass(frozen=True)
class Layout:
    """How the frames of one stream are laid out.

    Attributes:
        batch_shape: the leading dims before the image dims, ``()`` for one image.
        order: ``"HWC"``, ``"CHW"`` or ``"HW"`` (grayscale without a channel dim).
        channels: 1 (grayscale), 3 (RGB) or 4 (RGBA; the alpha channel is dropped).
        height: image height in pixels.
        width: image width in pixels.
        dtype: torch dtype name of the input, e.g. ``"uint8"``, ``"float32"``, ``"bool"``.
        scale: factor that maps input values to [0, 255]: 255 for float [0, 1] and
            bool frames, 1 otherwise.

    Example:
        >>> Layout((), "CHW", 3, 64, 48, "float32", 255).shape
        (3, 64, 48)
    """

    batch_shape: tuple[int, ...]
    order: str
    channels: int
    height: int
    width: int
    dtype: str
    scale: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_shape", tuple(int(d) for d in self.batch_shape))
        if self.order not in ORDERS:
            raise LayoutError(f"order must be one of {ORDERS}, got {self.order!r}")
        if self.channels not in CHANNELS or (self.order == "HW" and self.channels != 1):
            raise LayoutError(
                f"channels must be one of {CHANNELS} (1 for order 'HW'), got {self.channels} "
                f"with order {self.order!r}"
            )
        if self.dtype not in _DTYPE_NAMES:
            raise LayoutError(f"dtype must be one of {_DTYPE_NAMES}, got {self.dtype!r}")
        if self.scale not in (1, 255):
            raise LayoutError(f"scale must be 1 or 255, got {self.scale!r}")
        fixed = {"bool": 255, **dict.fromkeys(_INT_NAMES, 1)}.get(self.dtype, self.scale)
        if self.scale != fixed:
            raise LayoutError(
                f"scale must be {fixed} for dtype {self.dtype}, got {self.scale}; only float "
                "frames choose between 1 ([0, 255] values) and 255 ([0, 1] values)"
            )
        if min((*self.batch_shape, self.height, self.width), default=1) < 1:
            raise LayoutError(
                f"batch dims, height and width must be >= 1, got batch_shape "
                f"{self.batch_shape}, height {self.height}, width {self.width}"
            )

    @cached_property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image in input order, e.g. ``(H, W, C)`` for ``"HWC"``."""
        h, w, c = self.height, self.width, self.channels
        return {"HWC": (h, w, c), "CHW": (c, h, w), "HW": (h, w)}[self.order]

    @cached_property
    def shape(self) -> tuple[int, ...]:
        """The full input shape a frame of this layout has: ``batch_shape + image_shape``."""
        return self.batch_shape + self.image_shape

    @cached_property
    def output_shape(self) -> tuple[int, ...]:
        """The shape :func:`normalize` returns: ``(*batch_shape, 3, height, width)``."""
        return (*self.batch_shape, 3, self.height, self.width)

    def describe(self) -> str:
        """A short reading of the layout for error messages."""
        batch = f"batch {self.batch_shape}, " if self.batch_shape else ""
        return (
            f"{self.order} ({batch}height {self.height}, width {self.width}, "
            f"{self.channels} channel{'s' if self.channels > 1 else ''})"
        )


def as_tensor(x: Any) -> torch.Tensor:
    """Reads a frame of any supported kind as a CPU torch tensor, without Python lists.

    Accepts torch tensors (any device), numpy arrays, jax arrays (through dlpack),
    tensordict ``NonTensorData`` / ``NonTensorStack`` (what a batched ``render()``
    gives) and lists or tuples of any of these (stacked along a new first dim).
    The result may share memory with ``x``; never write into it.

    Args:
        x: the frame.

    Returns:
        A CPU torch tensor with the same shape and values as ``x``.

    Example:
        >>> as_tensor(np.zeros((4, 4, 3), np.uint8)).shape
        torch.Size([4, 4, 3])
    """
    if isinstance(x, torch.Tensor):
        if x.requires_grad:
            x = x.detach()
        return x if x.is_cpu else x.cpu()
    if isinstance(x, np.ndarray):
        return _from_numpy(x)
    if isinstance(x, NonTensorStack):
        return as_tensor(x.tolist())
    if isinstance(x, NonTensorData):
        return as_tensor(x.data)
    if isinstance(x, (list, tuple)):
        if not x:
            raise LayoutError("got an empty list of frames; send at least one frame")
        if isinstance(x[0], (int, float, bool)):
            return torch.as_tensor(x)
        parts = [as_tensor(part) for part in x]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            raise LayoutError(
                f"cannot stack a list of frames with different shapes {sorted(shapes)}; "
                "send frames of one shape"
            )
        return torch.stack(parts)
    if hasattr(x, "__dlpack__"):  # jax, cupy, ...
        try:
            return torch.from_dlpack(x).cpu()
        except (RuntimeError, TypeError, BufferError):
            pass
    if hasattr(x, "__array__"):
        return _from_numpy(np.asarray(x))
    raise LayoutError(
        f"cannot read a frame of type {type(x).__name__}; send a torch tensor, a numpy or "
        "jax array, or a list of them"
    )


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    if any(s < 0 for s in a.strides):
        a = a.copy()  # np.ascontiguousarray keeps a negative stride on a size-1 dim
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(a)
    except TypeError as e:
        raise LayoutError(
            f"cannot read a numpy frame of dtype {a.dtype} and shape {a.shape}; "
            f"convert it to one of {_DTYPE_NAMES}"
        ) from e


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _readings(shape: tuple[int, ...]) -> list[str]:
    """The orders an unhinted frame of this shape reads as (the detection rule)."""
    if len(shape) == 2:
        return ["HW"]
    if len(shape) < 2:
        return []
    return [order for order, dim in (("HWC", shape[-1]), ("CHW", shape[-3])) if dim in CHANNELS]


def _reading(shape: tuple[int, ...], order: str) -> dict[str, Any]:
    if order == "HWC":
        *batch, h, w, c = shape
    elif order == "CHW":
        *batch, c, h, w = shape
    else:
        *batch, h, w = shape
        c = 1
    return dict(batch_shape=tuple(batch), order=order, channels=c, height=h, width=w)


def check_hint(hint: Any, name: str = "layout") -> str | Layout | None:
    """``hint`` if it is a valid layout hint, else a LayoutError naming ``name`` and the fix.

    Example:
        >>> check_hint("HWC")
        'HWC'
    """
    if hint is None or isinstance(hint, Layout) or hint in ORDERS:
        return hint
    near = [o for o in ORDERS if isinstance(hint, str) and hint.upper() == o]
    fix = f"did you mean {near[0]!r}? " if near else ""
    raise LayoutError(
        f"{name}={hint!r} is not a layout: {fix}pass one of {ORDERS} (the order of the image "
        "dims; channels are always read as RGB), a funrec.Layout, or None to detect it."
    )


def detect(x: Any, hint: str | Layout | None = None) -> Layout:
    """Decides the layout of a frame (the first frame of a stream).

    Args:
        x: a frame of any kind :func:`as_tensor` reads, with optional leading batch dims.
        hint: an order (``"HWC"``, ``"CHW"``, ``"HW"``) that replaces the detection
            rule, or a full ``Layout`` that ``x`` must fit.

    Returns:
        The frame's ``Layout``.

    Raises:
        LayoutError: the shape reads as both ``HWC`` and ``CHW`` (both readings are
            listed), as none, does not fit the hint, or the dtype is not supported.

    Example:
        >>> layout = detect(np.zeros((2, 64, 48, 3), np.uint8))
        >>> layout.batch_shape, layout.order, layout.height, layout.width
        ((2,), 'HWC', 64, 48)
    """
    t = as_tensor(x)
    shape = tuple(t.shape)
    _check_dtype(t)
    if 0 in shape:
        raise LayoutError(f"got shape {shape} with an empty dim; send frames with pixels")
    if isinstance(hint, Layout):
        _check_fits(t, hint)
        return hint
    if hint is not None:
        check_hint(hint, "hint")
        orders = [hint]
        _check_hint(shape, hint)
    else:
        orders = _readings(shape)
    if not orders:
        raise LayoutError(
            f"got shape {shape}, which reads as no frame layout: expected [*batch, H, W, C] or "
            f"[*batch, C, H, W] with C in {CHANNELS}, or [H, W]; for batched grayscale "
            "[*batch, H, W] pass layout='HW'"
        )
    scale = int(first_scale(t))
    layouts = [Layout(**_reading(shape, o), dtype=_dtype_name(t), scale=scale) for o in orders]
    if len(layouts) > 1:
        readings = " or as ".join(lay.describe() for lay in layouts)
        raise LayoutError(
            f"got shape {shape}, which is ambiguous: it reads as {readings}; pass the layout, "
            f"e.g. layout={orders[0]!r} or layout={orders[1]!r}"
        )
    return layouts[0]


def _check_dtype(t: torch.Tensor) -> None:
    if t.dtype not in _DTYPES:
        raise LayoutError(
            f"got a frame of shape {tuple(t.shape)} and dtype {_dtype_name(t)}, which is not "
            f"supported; convert it to one of {_DTYPE_NAMES}"
        )


def _check_hint(shape: tuple[int, ...], order: str) -> None:
    rank = len(order)
    if len(shape) < rank:
        raise LayoutError(f"got shape {shape}, which has fewer than {rank} dims for {order}")
    dim = {"HWC": -1, "CHW": -3}.get(order)
    channel = shape[dim] if dim is not None else 1
    if channel not in CHANNELS:
        raise LayoutError(
            f"got shape {shape}, which has {channel} channels when read as {order}; "
            f"channels must be one of {CHANNELS}"
        )


def _check_fits(t: torch.Tensor, layout: Layout) -> None:
    if t.shape == layout.shape and t.dtype == getattr(torch, layout.dtype):
        return
    raise LayoutError(
        f"expected shape {layout.shape} and dtype {layout.dtype} (the stream's layout "
        f"{layout.describe()}), got shape {tuple(t.shape)} and dtype {_dtype_name(t)}; send "
        "frames of one layout per stream or start a new recorder"
    )


def normalize(
    x: Any, layout: Layout, *, background: tuple[int, int, int] | None = None
) -> torch.Tensor:
    """Converts a frame that fits ``layout`` into ``uint8 [*batch, 3, H, W]``.

    Grayscale is repeated to 3 channels; RGBA drops its alpha channel, or, with
    ``background``, is composited over that colour. Values are multiplied by
    ``layout.scale``, rounded and clipped to [0, 255]; NaN becomes 0 and +-inf is
    clipped. Integer frames must hold values in [0, 255].

    Args:
        x: a frame of any kind :func:`as_tensor` reads.
        layout: the stream's layout, usually from :func:`detect` on the first frame.
        background: RGB colour (0-255) to composite RGBA frames over; ``None`` drops alpha.

    Returns:
        A fresh ``uint8`` CPU tensor ``[*batch, 3, H, W]`` that shares no memory with
        ``x``. It keeps the channel position of ``x`` in memory (an HWC frame gives a
        channels-last view, one copy and no transpose), and grayscale's three channels
        are one channel expanded; call ``.contiguous()`` where a packed CHW is needed.

    Raises:
        LayoutError: ``x`` does not have ``layout.shape`` and ``layout.dtype`` (the
            message gives both shapes), or integer values lie outside [0, 255].

    Example:
        >>> x = np.full((8, 8), 0.5, np.float32)
        >>> normalize(x, detect(x))[:, 0, 0].tolist()
        [128, 128, 128]
    """
    t = as_tensor(x)
    _check_fits(t, layout)
    # Work in the input's own channel position and move the channel dim last of
    # all, as a view: a uint8 frame then costs one straight copy.
    channel_dim = -3 if layout.order == "CHW" else -1
    if layout.order == "HW":
        t = t.unsqueeze(-1)
    rgb = _to_uint8_values(t if layout.channels < 4 else t.narrow(channel_dim, 0, 3), layout)
    if t.dtype == torch.uint8:
        rgb = rgb.clone()  # a fresh copy: environments reuse their render buffers
    if layout.channels == 4 and background is not None:
        alpha = _to_uint8_values(t.narrow(channel_dim, 3, 1), layout).float() / 255
        shape = [1, 1, 1]
        shape[channel_dim] = 3
        bg = torch.tensor(background, dtype=torch.float32).view(shape)
        rgb = (rgb.float() * alpha + bg * (1 - alpha)).round_().clamp_(0, 255).to(torch.uint8)
    if layout.channels == 1:
        rgb = rgb.expand(*rgb.shape[:channel_dim], 3, *rgb.shape[channel_dim:][1:])
    return rgb.movedim(channel_dim, -3) if channel_dim == -1 else rgb


def _to_uint8_values(t: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Maps values to uint8 [0, 255]; may share memory with ``t``; raises on bad integers."""
    if t.dtype == torch.uint8:  # to_uint8's first case, without its call on the hot path
        return t
    if t.dtype in _INT_DTYPES:
        t = t.to(torch.int64)  # comparisons are not implemented for torch's uint16/32/64
        if not in_range(t):
            raise LayoutError(
                f"got an integer frame of shape {layout.shape} and dtype {layout.dtype} with "
                f"values in [{t.min().item()}, {t.max().item()}]; integer frames must lie in "
                "[0, 255]: clip them or convert them to uint8"
            )
    return to_uint8(t, layout.scale)


def out_of_range(x: Any, layout: Layout) -> tuple[int, int]:
    """Counts the values :func:`normalize` cannot keep as they are in a float frame.

    :func:`count_out_of_range` for a frame of any kind :func:`as_tensor` reads,
    as Python ints.

    Args:
        x: a frame that fits ``layout``.
        layout: the stream's layout.

    Returns:
        ``(nonfinite, clipped)``: NaN and +-inf values, and finite values that lie
        outside [0, 255] once multiplied by ``layout.scale``. Integer and bool
        frames give ``(0, 0)`` without work (they are checked or exact).

    Example:
        >>> x = np.array([[0.5, np.nan], [np.inf, -0.2]], np.float32)
        >>> out_of_range(x, detect(x, hint="HW"))
        (2, 1)
    """
    nonfinite, clipped = count_out_of_range(as_tensor(x), layout.scale)
    return int(nonfinite), int(clipped)


# -- The value rules: arithmetic on numpy, torch and (traced) jax arrays alike ----------

Array = Any  # a numpy array, a torch tensor or a (traced) jax array
Number = Any  # a Python number, or a 0-d array of one


def _namespace(x: Array) -> Any:
    """The array functions of ``x``: torch, numpy or jax.numpy (the array API's namespace)."""
    return torch if isinstance(x, torch.Tensor) else x.__array_namespace__()


def _cast(x: Array, name: str) -> Array:
    return x.to(getattr(torch, name)) if isinstance(x, torch.Tensor) else x.astype(name)


def _then(work: Array, name: str, *args: Any, **kwargs: Any) -> Array:
    """``name(work, ...)`` from ``work``'s namespace; torch writes it over ``work``, a temporary."""
    if isinstance(work, torch.Tensor):
        return getattr(torch, name)(work, *args, out=work, **kwargs)
    return getattr(work.__array_namespace__(), name)(work, *args, **kwargs)


def _value_kind(x: Array) -> str:
    """``"uint8"``, ``"bool"``, ``"float"`` or ``"int"``: what the value rules do with ``x``."""
    return _kind_of(x.dtype)


@functools.cache
def _kind_of(dtype: Any) -> str:
    name = str(dtype).removeprefix("torch.")
    return "float" if name in _FLOAT_NAMES else name if name in ("uint8", "bool") else "int"


def _scaled(x: Array, scale: Number) -> Array:
    """A float frame's values times ``scale``, in float32 (float64 stays float64)."""
    return _cast(x, "float64" if str(x.dtype).endswith("float64") else "float32") * scale


def first_scale(x: Array) -> Number:
    """The scale of a stream, from its first frame: the layout rule's ``scale``.

    Bool frames have scale 255, integer frames scale 1, and float frames scale
    255 (their values are [0, 1]) when their largest finite value is <= 1 or
    none is finite, else 1 (their values are [0, 255]).

    Args:
        x: the first frame: a numpy array, torch tensor or (traced) jax array.

    Returns:
        255 or 1: a Python int for bool and integer frames, a 0-d integer array
        of ``x``'s kind for float frames.

    Example:
        >>> int(first_scale(np.array([0.2, np.inf])))
        255
    """
    kind = _value_kind(x)
    if kind != "float":
        return 255 if kind == "bool" else 1
    xp = _namespace(x)
    return pick(xp.where(xp.isfinite(x), x, -math.inf).max() <= 1, 255, 1)


def in_range(x: Array) -> Any:
    """Whether a frame's values fit uint8 as they are: integer frames must lie in [0, 255].

    Where this is false, :func:`normalize` raises and ``funrec_jax`` refuses the
    frame. Uint8, bool and float frames always fit (floats are scaled and clipped).

    Args:
        x: a frame: a numpy array, torch tensor or (traced) jax array.

    Returns:
        ``True``, or a 0-d bool array of ``x``'s kind for integer frames.

    Example:
        >>> bool(in_range(np.array([0, 300]))), bool(in_range(np.array([0.0, 300.0])))
        (False, True)
    """
    if _value_kind(x) != "int":
        return True
    return (x >= 0).all() & (x <= 255).all()


def to_uint8(x: Array, scale: Number) -> Array:
    """A frame's values as uint8 [0, 255]: the value mapping of :func:`normalize`.

    Float values are multiplied by ``scale``, rounded and clipped to [0, 255]
    (NaN becomes 0, +-inf is clipped); bool becomes 0 or 255; integer values
    (in range, see :func:`in_range`) are kept.

    Args:
        x: a frame: a numpy array, torch tensor or (traced) jax array.
        scale: 1 or 255 (a number or a 0-d array), e.g. ``layout.scale``.

    Returns:
        A uint8 array of ``x``'s kind and shape; ``x`` itself when it is uint8.

    Example:
        >>> to_uint8(np.array([0.5, np.nan, 2.0]), 255).tolist()
        [128, 0, 255]
    """
    kind = _value_kind(x)
    if kind == "uint8":
        return x
    if kind != "float":
        return _cast(x, "uint8") * 255 if kind == "bool" else _cast(x, "uint8")
    work = _then(_scaled(x, scale), "nan_to_num", nan=0.0)
    return _cast(_then(_then(work, "round"), "clip", 0, 255), "uint8")


def count_out_of_range(x: Array, scale: Number) -> tuple[Number, Number]:
    """The values of a float frame that :func:`to_uint8` cannot keep as they are.

    Args:
        x: a frame: a numpy array, torch tensor or (traced) jax array.
        scale: the stream's scale (a number or a 0-d array).

    Returns:
        ``(nonfinite, clipped)``: how many values are NaN or +-inf, and how many
        finite ones lie outside [0, 255] once multiplied by ``scale``; int32
        0-d arrays of ``x``'s kind, or ``(0, 0)`` for frames that are not float.

    Example:
        >>> [int(n) for n in count_out_of_range(np.array([0.5, np.nan, -0.2]), 255)]
        [1, 1]
    """
    if _value_kind(x) != "float":
        return 0, 0
    xp = _namespace(x)
    finite = xp.isfinite(x)
    scaled = _scaled(x, scale)
    clipped = finite & ((scaled < 0) | (scaled > 255))
    return xp.sum(xp.logical_not(finite), dtype=xp.int32), xp.sum(clipped, dtype=xp.int32)


def scale_warning(x: Any, layout: Layout, key: Any) -> str | None:
    """Why a float stream's scale, decided on its first frame, may be wrong; None if it is sound.

    The scale of a float stream is decided once, on its first frame (see the
    module docstring). A first frame that is constant gives that rule nothing to
    go on when it reads as [0, 1], and negative values (e.g. observations normalised to [-1, 1]) are
    clipped to 0 in every frame.

    Args:
        x: the first frame of the stream.
        layout: the layout decided for it.
        key: the key the frames come from, for the message.

    Returns:
        A message naming the key, the values seen and the option that fixes it, or None.

    Example:
        >>> x = np.zeros((8, 8, 3), np.float32)
        >>> "scale" in scale_warning(x, detect(x), "pixels")
        True
    """
    t = as_tensor(x)
    if not t.is_floating_point():
        return None
    finite = t[torch.isfinite(t)]
    if finite.numel() == 0:
        return None
    low, high = finite.min().item(), finite.max().item()
    if low >= 0 and (layout.scale == 1 or low != high):
        return None
    other = dataclasses.replace(layout, scale=1 if layout.scale == 255 else 255)
    reading = "[0, 1]" if layout.scale == 255 else "[0, 255]"
    problem = (
        f"its values lie in [{low:g}, {high:g}]: negative values are clipped to 0 in every "
        "frame; map them to [0, 1] first (e.g. funrec.map_td) if they are normalised"
        if low < 0
        else f"it is constant ({low:g}), so nothing tells [0, 1] from [0, 255]"
    )
    return (
        f"key {key!r}: the float stream was read as {reading} from its first frame, but "
        f"{problem}. If the frames are in the other range, pass layout={other!r}."
    )
