"""Streaming out of a running scan: an ordered ``io_callback`` hands chunks to open writers."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import torch
from jax import lax
from jax.experimental import io_callback

from funrec.combinators import GateState, NamedState
from funrec.errors import RecorderError
from funrec.views import drain as core_drain
from funrec_jax._arrays import as_torch_view
from funrec_jax.export import batch_shape, export, held_frames
from funrec_jax.recorders import RING_STATES, FramesState


def drain(state: Any, when: Any = True) -> Any:
    """The state emptied of what it holds, where ``when``: counters and layout stay.

    Inside JAX a ring is emptied by forgetting its items (``held = 0``), so this
    costs nothing; hand the items out first (:func:`write_drained` does both).

    Args:
        state: a ``funrec_jax`` state.
        when: a traced bool, or a bool per env for a batched state.

    Returns:
        The state, with no item held where ``when``.

    Example:
        >>> import jax.numpy as jnp, funrec_jax
        >>> rec = funrec_jax.frames(max_frames=4)
        >>> data = {"pixels": jnp.zeros((8, 8, 3), jnp.uint8)}
        >>> int(funrec_jax.drain(rec.step(rec.init(data), data)).held)
        0
    """

    def empty(ring: Any) -> Any:
        if not isinstance(ring, RING_STATES):
            return ring
        return ring._replace(held=jnp.where(when, 0, ring.held).astype(jnp.int32))

    return jax.tree.map(empty, state, is_leaf=lambda x: isinstance(x, RING_STATES))


def write_drained(state: Any, writer: Any, *, when: Any = True) -> Any:
    """Inside JAX: writes what ``state`` holds to open writers, and returns it drained.

    The edge of ``funrec.writers.write_drained`` for a running scan: under
    ``lax.cond(when, ...)`` an *ordered* ``jax.experimental.io_callback`` hands
    the state to the host, where it is exported and written with
    ``funrec.writers.write_drained``; inside JAX the rings are emptied. Call it
    at scan level every K steps (not inside ``vmap``, where an ordered callback
    cannot run) with K at most the ring's capacity, so nothing is dropped.
    Open the writers (ffmpeg starts) before the jitted call; they are fixed
    when the function is traced.

    Args:
        state: a ``funrec_jax`` state, unbatched or batched by ``vmap``.
        writer: what ``funrec.writers.write_drained`` takes for one state (a
            writer, or a dict name -> writer for a ``named`` state: names
            without a writer keep their items); for a batched state, a sequence
            with one such entry per env.
        when: a traced bool: write now or not.

    Returns:
        The state, drained where it was written.

    Example:
        >>> import tempfile, jax, jax.numpy as jnp, funrec_jax
        >>> from funrec.writers import open_video
        >>> rec = funrec_jax.frames(max_frames=4)
        >>> data = {"pixels": jnp.zeros((16, 16, 3), jnp.uint8)}
        >>> with open_video(tempfile.mkdtemp() + "/clip.mp4") as w:
        ...     def body(state, t):
        ...         state = rec.step(state, data)
        ...         return funrec_jax.write_drained(state, w, when=t % 4 == 3), None
        ...     state, _ = jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(8)))(rec.init(data))
        >>> w.frames
        8
    """
    envs = math.prod(batch_shape(state)) if batch_shape(state) else None
    if envs is not None:
        _check_per_env(writer, envs)
    names = _written_names(writer)
    sent = _select(state, names)

    def send(host_state: Any) -> None:
        from funrec.writers import write_drained as write_core

        views = jax.tree.map(as_torch_view, host_state)
        rest = _write_frames(views, list(writer) if envs is not None else [writer])
        core = export(rest, strict=False)  # counts, layout and non-frame items: the core's way
        if type(core) is tuple:  # one state per env (core states are NamedTuples)
            for env_state, env_writer in zip(_flat(core), writer, strict=True):
                write_core(env_state, env_writer)
        else:
            write_core(core, writer)

    lax.cond(
        jnp.asarray(when), lambda s: io_callback(send, None, s, ordered=True), lambda s: None, sent
    )
    if names is None:
        return drain(state, when)
    return NamedState([(n, drain(s, when) if n in names else s) for n, s in state.items()])


def finish(state: Any, writer: Any) -> Any:
    """After the jitted call: writes what ``state`` still holds and closes the writers.

    The frames recorded after the last :func:`write_drained` inside the scan are
    still in the rings; this writes them with ``funrec.writers.write_drained``
    and closes every writer (a finished file each), even if one of them fails.

    Args:
        state: the ``funrec_jax`` state the jitted call returned.
        writer: what :func:`write_drained` was given in the scan.

    Returns:
        The core state, drained (for a batched state a tuple, one per env in the
        order of ``writer``): episodes and items without a writer stay in it.

    Example:
        >>> import tempfile, jax, jax.numpy as jnp, funrec_jax
        >>> from funrec.writers import open_video, read_video
        >>> rec = funrec_jax.frames(max_frames=4)
        >>> data = {"pixels": jnp.zeros((16, 16, 3), jnp.uint8)}
        >>> w = open_video(tempfile.mkdtemp() + "/clip.mp4")
        >>> def body(state, t):
        ...     state = rec.step(state, data)
        ...     return funrec_jax.write_drained(state, w, when=t % 4 == 3), None
        >>> state, _ = jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(6)))(rec.init(data))
        >>> _ = funrec_jax.finish(state, w)  # the last 2 frames, then close
        >>> len(read_video(w.path))
        6
    """
    from funrec.writers import write_drained as write_core

    envs = math.prod(batch_shape(state)) if batch_shape(state) else None
    if envs is not None:
        _check_per_env(writer, envs)
    core = export(state)
    pairs = list(zip(_flat(core), writer, strict=True)) if envs else [(core, writer)]
    with contextlib.ExitStack() as closing:
        for _, entry in pairs:
            for w in entry.values() if isinstance(entry, Mapping) else [entry]:
                closing.callback(w.close)
        drained = [write_core(core, entry) for core, entry in pairs]
    return tuple(drained) if envs is not None else drained[0]


def _write_frames(state: Any, writers: list[Any]) -> Any:
    """Hands the frames of every ring with a video writer straight to it; returns them emptied.

    ``state`` holds torch views of the callback's buffers and ``writers`` one
    entry per env (one for an unbatched state). A ring's frames go to the writer
    as one view of the ring, so the writer's own copy is the only one on the
    host (the core's path would copy them out, then stack them). Frames with
    batch dims of their own are left to the core, which tiles them into a grid.
    """
    from funrec.writers import VideoWriter

    if isinstance(state, NamedState) and isinstance(writers[0], Mapping):
        return NamedState(
            [
                (
                    name,
                    _write_frames(sub, [w[name] for w in writers]) if name in writers[0] else sub,
                )
                for name, sub in state.items()
            ]
        )
    if isinstance(state, GateState):
        return state._replace(inner=_write_frames(state.inner, writers))
    direct = isinstance(state, FramesState) and not state.layout.batch_shape
    if not direct or not all(isinstance(w, VideoWriter) for w in writers):
        return state
    dims = state.held.dim()
    flat = jax.tree.map(lambda t: t.flatten(0, dims - 1), state) if dims else state
    for env, writer in enumerate(writers):
        ring = jax.tree.map(lambda t, e=env: t[e], flat) if dims else state
        writer.write(held_frames(ring, copy=False))
    return state._replace(held=torch.zeros_like(state.held))


def _check_per_env(writer: Any, envs: int) -> None:
    if not isinstance(writer, Sequence) or isinstance(writer, str | bytes) or len(writer) != envs:
        got = f"{len(writer)} entries" if isinstance(writer, Sequence) else type(writer).__name__
        raise TypeError(
            f"funrec_jax.write_drained(): a batched state (stepped under vmap) of {envs} envs "
            f"needs one writer per env, e.g. a list of {envs}; got {got}."
        )


def _written_names(writer: Any) -> frozenset[str] | None:
    """The names of a named state that have a writer, or None for one writer per state."""
    entries = writer if not isinstance(writer, Sequence) else (writer[0] if writer else None)
    return frozenset(entries) if isinstance(entries, Mapping) else None


def _select(state: Any, names: frozenset[str] | None) -> Any:
    if names is None:
        return state
    if not isinstance(state, NamedState):
        raise TypeError(
            f"funrec_jax.write_drained(): a dict of writers needs a named(...) state, got "
            f"{type(state).__name__}; pass one writer."
        )
    unknown = names - set(state)
    if unknown:
        raise KeyError(
            f"funrec_jax.write_drained(): no recorder named {sorted(unknown)} in "
            f"named({', '.join(state)}); use the names given to funrec_jax.named(...)."
        )
    return NamedState([(n, s) for n, s in state.items() if n in names])


def _flat(states: Any) -> list[Any]:
    if type(states) is tuple:
        return [s for part in states for s in _flat(part)]
    return [states]


def _drain_ring(state: Any, name: str | None = None) -> tuple[tuple[Any, ...], Any]:
    """``funrec.drain`` for a funrec_jax ring: the held items on the host, the ring emptied.

    So the core's views (``funrec.video``, ``funrec.episodes``, ``funrec.trajectory``)
    read an unbatched funrec_jax state as they read the state it exports to.
    """
    if name is not None:
        raise RecorderError(
            f"drain(name={name!r}): the state is {type(state).__name__}, not a named(...) state."
        )
    if batch_shape(state):
        raise RecorderError(
            f"drain(): this {type(state).__name__} was stepped under vmap (batch "
            f"{batch_shape(state)}); funrec_jax.export(state) gives one core state per env."
        )
    items, _ = core_drain(export(state))
    return items, drain(state)


for _ring in RING_STATES:
    core_drain.register(_ring, _drain_ring)
