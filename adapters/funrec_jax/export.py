"""Out of JAX: a ``funrec_jax`` state as the core's state, for the core's views and writers."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import torch
from tensordict import TensorDict

import funrec
from funrec._queue import Queue
from funrec.combinators import GateState, NamedState
from funrec.errors import BufferFullError, RecorderError
from funrec.layout import LayoutError
from funrec_jax._arrays import as_torch_view
from funrec_jax.recorders import EpisodeStatsState, FramesState, Refused, TensorDictsState


def export(state: Any, *, strict: bool = True) -> Any:
    """The core's state for a ``funrec_jax`` state: what ``funrec.video``, ``drain``... take.

    Arrays leave JAX through dlpack and are copied (a torch view of a JAX
    buffer is writable and would alias it). A state stepped under ``vmap``
    (leading batch dims on every array) gives a tuple of per-env core states,
    nested for several batch dims; their episodes are numbered by env.

    Args:
        state: a ``funrec_jax`` state: a recorder's, a gate's or a ``named`` one.
        strict: raise when a recorder refused items, as the core would have
            raised at the step (``BufferFullError`` for a full ring under
            ``overflow="error"``, ``LayoutError`` for integer frames outside
            [0, 255]); False exports what was recorded.

    Returns:
        A core state (``funrec.FramesState``, ``GateState``, ``NamedState``, ...),
        or a tuple of them for a batched state.

    Raises:
        BufferFullError, LayoutError: ``strict`` and items were refused; the
        message says how many and where. The state is unchanged: export again
        with ``strict=False`` to read what was recorded.

    Example:
        >>> import jax.numpy as jnp, funrec, funrec_jax
        >>> rec = funrec_jax.frames(max_frames=4)
        >>> data = {"pixels": jnp.zeros((8, 8, 3), jnp.uint8)}
        >>> funrec.video(funrec_jax.export(rec.step(rec.init(data), data))).shape
        torch.Size([1, 3, 8, 8])
    """
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(state)):
        raise RecorderError(
            "funrec_jax.export(): the state is being traced (inside jit, scan or vmap); "
            "export runs on the host: return the state from the jitted function and export "
            "it there, or stream from inside with funrec_jax.write_drained."
        )
    views = jax.tree.map(as_torch_view, state)
    problems: list[tuple[type, str]] = []
    _report(views, "state", problems)
    if strict and problems:
        kind = problems[0][0]
        raise kind(
            "items were refused inside JAX, where the core would have raised: "
            + "; ".join(message for _, message in problems)
            + ". Nothing recorded is lost: export(state, strict=False) gives what was recorded."
        )
    return _per_env(views, batch_shape(views), 0)


def _per_env(views: Any, batch: tuple[int, ...], env: int) -> Any:
    if not batch:
        return _export(views, env)
    inner = math.prod(batch[1:])
    return tuple(
        _per_env(jax.tree.map(lambda t, i=i: t[i], views), batch[1:], env + i * inner)
        for i in range(batch[0])
    )


def batch_shape(state: Any) -> tuple[int, ...]:
    """The leading dims ``vmap`` gave every array of a ``funrec_jax`` state (``()``: none)."""
    if isinstance(state, FramesState | TensorDictsState | EpisodeStatsState):
        return tuple(state.held.shape)
    if isinstance(state, GateState):
        return tuple(state.seen.shape)
    if isinstance(state, NamedState):
        return batch_shape(next(iter(state.values())))
    raise RecorderError(
        f"funrec_jax.export(): {type(state).__name__} is not a funrec_jax state; pass the "
        "state of a funrec_jax recorder (frames, tensordicts, episode_stats, a gate or named)."
    )


def _report(state: Any, path: str, problems: list[tuple[type, str]]) -> None:
    if isinstance(state, NamedState):
        for name, sub in state.items():
            _report(sub, f"{path}[{name!r}]", problems)
    elif isinstance(state, GateState):
        _report(state.inner, path, problems)
    elif isinstance(state, FramesState | TensorDictsState | EpisodeStatsState):
        refused: Refused = state.refused
        capacity = jax.tree.leaves(state.items)[0].shape[state.held.dim()]
        full, values = int(refused.full.sum()), int(refused.values.sum())
        if full:
            problems.append(
                (
                    BufferFullError,
                    f"{path} refused {full} item(s) because its ring of {capacity} was full "
                    "under overflow='error' (stream it with funrec_jax.write_drained every "
                    "K steps, raise the capacity, or choose 'drop_oldest'/'drop_newest')",
                )
            )
        if values:
            problems.append(
                (
                    LayoutError,
                    f"{path} refused {values} frame(s) with integer values outside [0, 255] "
                    "(clip them or convert them to uint8)",
                )
            )


@functools.singledispatch
def _export(state: Any, env: int) -> Any:
    raise RecorderError(f"funrec_jax.export(): cannot export {type(state).__name__}.")


def _held(
    ring: torch.Tensor, slot: torch.Tensor, held: torch.Tensor, copy: bool = True
) -> torch.Tensor:
    """The items a ring holds, oldest first: one or two straight slices.

    A copy, or with ``copy=False`` a view of ``ring`` when they lie in one slice.
    """
    capacity, held = ring.shape[0], int(held)
    start = (int(slot) - held) % capacity
    if start + held <= capacity:
        items = ring[start : start + held]
        return items.clone() if copy else items
    return torch.cat([ring[start:], ring[: start + held - capacity]])


def held_frames(state: FramesState, copy: bool = True) -> torch.Tensor:
    """The frames a ring (of torch views) holds, oldest first, as uint8 ``[T, *batch, 3, H, W]``.

    With ``copy=False`` the result may be a view of the ring: write it to a
    writer (which copies) before the ring's buffer goes away.
    """
    frames = _held(state.items, state.next, state.held, copy)
    order = state.layout.order
    if order == "HW":
        frames = frames.unsqueeze(-1)
    if order != "CHW":
        frames = frames.movedim(-1, -3)  # channels-last in memory, as the core holds them
    return frames.expand((*frames.shape[:-3], 3, *frames.shape[-2:]))


def _counts(counts: funrec.Counts) -> funrec.Counts:
    return funrec.Counts(*(int(c) for c in counts))


@_export.register
def _(state: FramesState, env: int) -> funrec.FramesState:
    scale = int(state.scale)
    return funrec.FramesState(
        items=Queue.of(held_frames(state).unbind(0)),
        counts=_counts(state.counts),
        layout=dataclasses.replace(state.layout, scale=scale) if scale else None,
        nonfinite=int(state.nonfinite),
        clipped=int(state.clipped),
    )


@_export.register
def _(state: TensorDictsState, env: int) -> funrec.TensorDictsState:
    arrays = jax.tree.map(lambda ring: _held(ring, state.next, state.held), state.items)
    leaves = jax.tree.leaves(state.items)
    batch = tuple(leaves[0].shape[1 : 1 + state.batch_dims]) if leaves else ()
    held = int(state.held)
    steps = TensorDict(arrays, batch_size=[held, *batch]).unbind(0) if held else ()
    return funrec.TensorDictsState(
        items=Queue.of(steps), counts=_counts(state.counts), batch_size=batch
    )


@_export.register
def _(state: EpisodeStatsState, env: int) -> funrec.EpisodeStatsState:
    held = [_held(ring, state.next, state.held).tolist() for ring in state.items]
    n = state.running_reward.shape[0]
    episodes = [
        funrec.Episode(env * n + int(e), float(r), int(length))
        for e, r, length in zip(*held, strict=True)
    ]
    return funrec.EpisodeStatsState(
        items=Queue.of(episodes),
        counts=_counts(state.counts),
        running_reward=tuple(state.running_reward.tolist()),
        running_length=tuple(state.running_length.tolist()),
        reward_key=state.reward_key,
        done_keys=state.done_keys,
    )


@_export.register
def _(state: GateState, env: int) -> GateState:
    return GateState(
        _export(state.inner, env),
        int(state.seen),
        int(state.skipped),
        int(state.episode),
        int(state.window),
    )


@_export.register
def _(state: NamedState, env: int) -> NamedState:
    return NamedState([(name, _export(sub, env)) for name, sub in state.items()])
