"""States as values: deep snapshots, where two states differ, and streams in words.

A recorder state is a tree of NamedTuples, tuples, mappings, persistent queues,
tensors and TensorDicts. The law checks compare such trees by value and, when
they differ, say where (``state.items[2]``) and how, in words.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from funrec._queue import Queue, same_value

_SMALL = 8  # tensors with at most this many values are shown in full


def snapshot(value: Any) -> Any:
    """A deep copy of ``value`` to compare it with later.

    Tensors and TensorDicts are cloned, tuples (NamedTuples too), lists and
    dicts are rebuilt around snapshots of their items, and any other part is
    deep-copied; a part that cannot be copied is kept as it is, so a change
    inside it goes unseen.
    """
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, TensorDictBase):
        return value.apply(torch.clone)  # td.clone() cannot add 0 to uint16/32/64 leaves
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(snapshot(v) for v in value))
    if type(value) in (tuple, list):
        return type(value)(snapshot(v) for v in value)
    if type(value) is dict:
        return {k: snapshot(v) for k, v in value.items()}
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def difference(a: Any, b: Any, path: str = "state") -> str | None:
    """Where ``a`` and ``b`` differ, in words, or None when they are equal by value.

    Tensors are equal when their dtype, shape and values are (NaN equals NaN);
    containers when their types, keys or lengths, and items are.

    Args:
        a: a value, e.g. a state before a step.
        b: the value to compare it with.
        path: how to name ``a`` in the answer.

    Returns:
        None, or the path of the first part that differs and both versions of it,
        e.g. ``"state.counts.skipped: 2 vs 3"``.
    """
    if type(a) is not type(b):
        return (
            f"{path}: {describe(a)} vs {describe(b)} "
            f"(a {type(a).__name__} and a {type(b).__name__})"
        )
    if isinstance(a, torch.Tensor):
        return _tensor_difference(a, b, path)
    if isinstance(a, TensorDictBase):
        return _tensordict_difference(a, b, path)
    parts_a, parts_b = _parts(a), _parts(b)
    if parts_a is None or parts_b is None:
        if isinstance(a, float) and a != a and b != b:  # NaN
            return None
        return None if same_value(a, b) else f"{path}: {describe(a)} vs {describe(b)}"
    names_a, names_b = [n for n, _ in parts_a], [n for n, _ in parts_b]
    if names_a != names_b:
        return f"{path}: holds {_names(names_a)} vs {_names(names_b)}"
    return _first(
        difference(x, y, path + name) for (name, x), (_, y) in zip(parts_a, parts_b, strict=True)
    )


def _parts(value: Any) -> list[tuple[str, Any]] | None:
    """The named parts of a container (``.field``, ``[i]``, ``[key]``), None for a leaf."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return [(f".{f}", v) for f, v in zip(value._fields, value, strict=True)]
    if isinstance(value, tuple | list | Queue):
        return [(f"[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return [(f"[{k!r}]", v) for k, v in value.items()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f".{f.name}", getattr(value, f.name)) for f in dataclasses.fields(value)]
    return None


def _names(names: list[str]) -> str:
    if all(n.startswith("[") and n[1:-1].isdigit() for n in names):
        return plural(len(names), "item")
    return ", ".join(names) or "nothing"


def _first(found: Iterator[str | None]) -> str | None:
    return next((d for d in found if d is not None), None)


def _tensor_difference(a: torch.Tensor, b: torch.Tensor, path: str) -> str | None:
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{path}: {describe(a)} vs {describe(b)}"
    if same_value(a, b):
        return None
    differs = a.cpu() != b.cpu()
    if a.is_floating_point() or a.is_complex():
        differs &= ~(a.cpu().isnan() & b.cpu().isnan())
    where = differs.nonzero()
    if not len(where):
        return None
    index = tuple(where[0].tolist())
    return (
        f"{path}: {len(where)} of {a.numel()} values differ, the first at index {list(index)}: "
        f"{a[index].item()!r} vs {b[index].item()!r}"
    )


def _tensordict_difference(a: TensorDictBase, b: TensorDictBase, path: str) -> str | None:
    if a.batch_size != b.batch_size:
        return f"{path}: batch size {tuple(a.batch_size)} vs {tuple(b.batch_size)}"
    keys_a, keys_b = set(a.keys(True, True)), set(b.keys(True, True))
    if keys_a != keys_b:
        return (
            f"{path}: keys {sorted(map(_key, keys_a - keys_b))} only in the first, "
            f"{sorted(map(_key, keys_b - keys_a))} only in the second"
        )
    return _first(
        difference(a.get(k), b.get(k), f"{path}[{_key(k)!r}]") for k in sorted(keys_a, key=_key)
    )


def _key(key: str | tuple[str, ...]) -> str:
    return ".".join(key) if isinstance(key, tuple) else key


def describe(value: Any) -> str:
    """A short account of ``value``: dtype, shape and values of a tensor, else its repr."""
    if isinstance(value, torch.Tensor):
        head = f"{str(value.dtype).removeprefix('torch.')} {list(value.shape)}"
        if value.numel() <= _SMALL:
            return f"{head} {value.tolist()}"
        flat = value.detach().reshape(-1)
        if flat.dtype in (torch.uint16, torch.uint32, torch.uint64):  # no min/max for these
            flat = flat.double()
        low, high = flat.min().item(), flat.max().item()
        return f"{head} all {low!r}" if low == high else f"{head} from {low!r} to {high!r}"
    if isinstance(value, TensorDictBase):
        return f"TensorDict(batch size {tuple(value.batch_size)}, {_leaves(value)})"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _leaves(td: TensorDictBase) -> str:
    keys = sorted(td.keys(True, True), key=_key)
    return ", ".join(f"{_key(k)}: {describe(td.get(k))}" for k in keys) or "no keys"


def plural(n: int, word: str) -> str:
    """``"1 step"``, ``"2 steps"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe_stream(stream: Sequence[TensorDictBase]) -> str:
    """The TensorDicts of a stream in words, one line per step."""
    batch = tuple(stream[0].batch_size) if stream else ()
    lines = [f"a stream of {plural(len(stream), 'TensorDict')} of batch size {batch}:"]
    lines += [f"  step {i}: {_leaves(td)}" for i, td in enumerate(stream)]
    return "\n".join(lines)


def unpicklable_part(value: Any, path: str = "state") -> str | None:
    """The path of the first part of ``value`` that pickle cannot write, if any."""
    found = _first(unpicklable_part(v, path + name) for name, v in _parts(value) or ())
    if found is not None:
        return found
    try:
        pickle.dumps(value)
    except Exception:
        return f"{path} ({describe(value)})"
    return None
