"""Arrays at the edges of JAX: reading keys of a pytree, static layouts, torch copies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funrec import rules
from funrec.errors import MissingKeyError, RecorderError
from funrec.layout import Layout, as_tensor, detect

Key = str | tuple[str, ...]


def read(data: Any, key: Key, who: str) -> Any:
    """``data[key]`` for a pytree (nested dicts, NamedTuples, dataclasses...).

    A key names the path to a node: dict keys, field names and sequence indices,
    as in the pytree's key paths. A missing one raises a MissingKeyError listing
    the keys there are.
    """
    path = (key,) if isinstance(key, str) else tuple(key)
    node = data
    for name in path:
        children = node if isinstance(node, Mapping) else _children(node)
        if name not in children:
            raise MissingKeyError(
                f"{who}: key {key!r} is not in the data (keys: {leaf_keys(data)}). Pass the "
                "key that holds the data; nested keys are tuples, e.g. ('next', 'reward')."
            )
        node = children[name]
    return node


def _children(node: Any) -> dict[Any, Any]:
    """The children of a pytree node by name (field name, index...); {} for a leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    return {_name(path[0]): child for path, child in flat if path}


def _name(entry: Any) -> Any:
    """The name in one entry of a pytree key path: a dict key, a field name or an index."""
    for field in ("key", "name", "idx"):
        if hasattr(entry, field):
            return getattr(entry, field)
    return entry


def paths(data: Any) -> list[tuple[Any, ...]]:
    """The key path of every array leaf of a pytree, as a tuple of names."""
    flat, _ = jax.tree_util.tree_flatten_with_path(data)
    return [tuple(_name(entry) for entry in path) for path, _ in flat]


def leaf_keys(data: Any) -> list[Key]:
    """The keys of every array in a pytree (nested ones as tuples)."""
    return [path[0] if len(path) == 1 else path for path in paths(data) if path]


def done_keys(data: Any, who: str) -> tuple[tuple[Any, ...], ...]:
    """The core's done keys (:func:`funrec.rules.done_paths`) of a pytree, or a MissingKeyError."""
    keys = rules.done_paths(paths(data))
    if not keys:
        raise MissingKeyError(
            f"{who}: the data has no done key (a leaf named 'done'; keys: {leaf_keys(data)}). "
            "Put the episode end under that name, e.g. {'next': {'done': timestep.last(), ...}} "
            "for a dm_env-style TimeStep, or pass done_key=..."
        )
    return keys


def done_flags(data: Any, keys: Any, batch: tuple[int, ...], who: str) -> jax.Array:
    """The core's episode-end flags (:func:`funrec.rules.any_done`) of a pytree, ``[*batch]``."""
    values = {key: jnp.asarray(read(data, key, who)) for key in keys}
    try:
        return rules.any_done(values, batch)
    except RecorderError as err:
        raise RecorderError(f"{who}: {err}") from err


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
