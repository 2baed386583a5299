"""Arrays at the edges of JAX: reading keys of a pytree, static layouts, torch copies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funrec.errors import MissingKeyError
from funrec.layout import Layout, as_tensor, detect

Key = str | tuple[str, ...]


def read(data: Any, key: Key, who: str) -> Any:
    """``data[key]`` for a (nested) mapping of arrays, or a MissingKeyError listing its keys."""
    path = (key,) if isinstance(key, str) else tuple(key)
    node = data
    for name in path:
        if not isinstance(node, Mapping) or name not in node:
            raise MissingKeyError(
                f"{who}: key {key!r} is not in the data (keys: {leaf_keys(data)}). Pass the "
                "key that holds the data; nested keys are tuples, e.g. ('next', 'reward')."
            )
        node = node[name]
    return node


def leaf_keys(data: Any, prefix: tuple[str, ...] = ()) -> list[Key]:
    """The keys of every array in a nested mapping (nested ones as tuples)."""
    if not isinstance(data, Mapping):
        return [prefix[0] if len(prefix) == 1 else prefix] if prefix else []
    keys: list[Key] = []
    for name, value in data.items():
        keys.extend(leaf_keys(value, (*prefix, name)))
    return keys


def is_concrete(x: Any) -> bool:
    """True for an array with values (not a tracer, not a ShapeDtypeStruct)."""
    return isinstance(x, np.ndarray | np.generic) or (
        isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
    )


def probe(x: Any) -> Any:
    """Something the core's layout functions read with the shape and dtype of ``x``.

    A concrete array is read as it is (values included); a traced or abstract
    one as zeros of its shape and dtype (a broadcast view, no memory).
    """
    if is_concrete(x):
        return x
    name = np.dtype(x.dtype).name
    dtype = getattr(torch, name, None)
    if isinstance(dtype, torch.dtype):
        return torch.zeros((), dtype=dtype).expand(tuple(x.shape))
    return np.broadcast_to(np.zeros((), x.dtype), tuple(x.shape))  # the core says why not


def layout_of(x: Any, hint: str | Layout | None) -> Layout:
    """The core's layout of a frame, decided from its static shape and dtype.

    The scale of a concrete float frame is decided from its values, as the core
    does on a first frame; a traced frame gets a placeholder scale.
    """
    return detect(probe(x), hint)


def check_fits(x: Any, layout: Layout) -> None:
    """Raises the core's LayoutError when ``x``'s shape or dtype differs from ``layout``."""
    detect(probe(x), layout)


def as_torch_view(x: Any) -> torch.Tensor:
    """A torch view of a JAX array, through dlpack; copy what you keep."""
    return as_tensor(x)


def int32(value: Any = 0) -> jax.Array:
    """A JAX int32 scalar."""
    return jnp.asarray(value, dtype=jnp.int32)
