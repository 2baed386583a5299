"""Gates and ``named`` inside JAX, on the core's rules and the core's state types.

A gate's state is the core's :class:`funrec.GateState` with int32 leaves; a
``named`` state is the core's :class:`funrec.NamedState`, registered here as a
pytree node (its names are structure, its states are data). A gate never
branches: it passes ``active & passes`` down to the recorder it wraps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from funrec import rules
from funrec.combinators import GateState, NamedState
from funrec.errors import RecorderError
from funrec_jax._arrays import Key, done_flags, done_keys, int32, read
from funrec_jax.recorders import Recorder, Refused

jax.tree_util.register_pytree_node(
    NamedState,
    lambda s: (tuple(s.values()), tuple(s)),
    lambda names, states: NamedState(list(zip(names, states, strict=True))),
)


def refusals(state: Any) -> jax.Array:
    """How many items the recorders in ``state`` refused so far (a traced int32)."""
    found = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, Refused))
    return sum((r.full + r.values for r in found if isinstance(r, Refused)), int32())


def _gate(recorder: Recorder, keep: Callable[[GateState, Any], tuple[Any, GateState]]) -> Recorder:
    def init(example: Any) -> GateState:
        return GateState(recorder.init(example), int32(), int32(), int32(), int32())

    def step(state: GateState, data: Any, active: Any = True) -> GateState:
        passes, after = keep(state, data)
        inner = recorder.step(state.inner, data, active & passes)
        # The core raises when the recorder behind refuses, and the gate keeps
        # its counters: count this step only if nothing new was refused.
        took = active & (refusals(inner) == refusals(state.inner))
        return GateState(
            inner,
            state.seen + took,
            state.skipped + (took & (passes ^ True)),
            rules.pick(took, after.episode, state.episode),
            rules.pick(took, after.window, state.window),
        )

    return Recorder(init, step)


def every(n: int, recorder: Recorder) -> Recorder:
    """Passes one step in ``n`` (the first, the ``n+1``-th, ...) to ``recorder``.

    Args:
        n: the period, an integer >= 1 (static).
        recorder: the ``funrec_jax`` recorder to feed.

    Returns:
        A :class:`Recorder` whose state is a :class:`funrec.GateState`.

    Example:
        >>> import funrec_jax
        >>> rec = funrec_jax.every(4, funrec_jax.frames(max_frames=16))
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise RecorderError(f"every(n): n must be an integer >= 1, got {n!r}.")
    return _gate(recorder, lambda s, data: (rules.periodic(s.seen, n), s))


def when(predicate: Callable[[Any], Any], recorder: Recorder) -> Recorder:
    """Passes the steps where ``predicate(data)`` is true to ``recorder``.

    Args:
        predicate: a traceable function of the step's data returning a bool scalar.
        recorder: the ``funrec_jax`` recorder to feed.

    Returns:
        A :class:`Recorder` whose state is a :class:`funrec.GateState`.

    Example:
        >>> import funrec_jax
        >>> rec = funrec_jax.when(lambda d: d["next"]["reward"] > 0,
        ...                       funrec_jax.frames(max_frames=16))
    """
    if not callable(predicate):
        raise RecorderError(f"when(predicate): predicate must be callable, got {predicate!r}.")

    def keep(state: GateState, data: Any) -> tuple[Any, GateState]:
        passes = jnp.asarray(predicate(data))
        if passes.shape != () or passes.dtype != jnp.bool_:
            raise RecorderError(
                f"when(predicate): the predicate gave {passes.dtype}{list(passes.shape)}; it "
                "must give one bool (reduce a batch with .any() or .all(), or vmap the recorder)."
            )
        return passes, state

    return _gate(recorder, keep)


def on_episodes(
    trigger: Callable[[Any], Any], recorder: Recorder, *, done_key: Key | None = None
) -> Recorder:
    """Passes every step of the episodes whose index satisfies ``trigger``.

    Episodes are numbered from 0; a step that ends the episode (the core's rule:
    any done key set, :func:`funrec.rules.done_paths`) is its last. The stream
    must be unbatched: ``vmap`` the recorder for a batch of envs.

    Args:
        trigger: a traceable ``trigger(episode_index) -> bool``, e.g.
            :func:`funrec.capped_cubic` or ``lambda ep: ep % 10 == 0``.
        recorder: the ``funrec_jax`` recorder to feed.
        done_key: the done key to read; None reads every done key.

    Returns:
        A :class:`Recorder` whose state is a :class:`funrec.GateState`.

    Example:
        >>> import funrec, funrec_jax
        >>> rec = funrec_jax.on_episodes(funrec.capped_cubic, funrec_jax.frames(max_frames=64))
    """
    who = f"on_episodes(done_key={done_key!r})"

    def keep(state: GateState, data: Any) -> tuple[Any, GateState]:
        keys = (done_key,) if done_key is not None else done_keys(data, who)
        for key in keys:
            if math.prod(jnp.shape(read(data, key, who))) != 1:
                raise RecorderError(
                    f"{who}: the done key {key!r} has shape {jnp.shape(read(data, key, who))}; "
                    "episode triggers need an unbatched stream (one done value). vmap the "
                    "recorder over the envs."
                )
        done = done_flags(data, keys, (), who)
        passes = jnp.asarray(trigger(state.episode), dtype=bool)
        return passes, state._replace(episode=state.episode + done.astype(jnp.int32))

    return _gate(recorder, keep)


def on_steps(trigger: Callable[[Any], Any], recorder: Recorder, *, length: int) -> Recorder:
    """Opens a window of ``length`` steps at every step index where ``trigger`` is true.

    Args:
        trigger: a traceable ``trigger(step_index) -> bool``.
        recorder: the ``funrec_jax`` recorder to feed.
        length: the number of steps each window passes, >= 1 (static).

    Returns:
        A :class:`Recorder` whose state is a :class:`funrec.GateState`.

    Example:
        >>> import funrec_jax
        >>> rec = funrec_jax.on_steps(lambda t: t % 1000 == 0,
        ...                           funrec_jax.frames(max_frames=100), length=100)
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise RecorderError(
            f"on_steps(length=...): length must be an integer >= 1, got {length!r}."
        )

    def keep(state: GateState, data: Any) -> tuple[Any, GateState]:
        triggered = jnp.asarray(trigger(state.seen), dtype=bool)
        passes, left = rules.window(state.window, triggered, length)
        return passes, state._replace(window=left)

    return _gate(recorder, keep)


def named(**recorders: Recorder) -> Recorder:
    """Feeds every step to each of ``recorders``; the state is a :class:`funrec.NamedState`.

    As in the core, a step either is taken by every recorder or by none: when
    one refuses it (a full ring under ``"error"``, bad values), the others do
    not take it either.

    Args:
        **recorders: the ``funrec_jax`` recorders, by name.

    Returns:
        A :class:`Recorder` whose state is a :class:`funrec.NamedState`.

    Example:
        >>> import funrec_jax
        >>> rec = funrec_jax.named(video=funrec_jax.frames(max_frames=64),
        ...                        stats=funrec_jax.episode_stats())
    """
    if not recorders:
        raise RecorderError("named() needs at least one recorder, e.g. named(video=frames(...)).")
    for name, recorder in recorders.items():
        if not isinstance(recorder, Recorder):
            raise RecorderError(
                f"named({name}=...): expected a funrec_jax.Recorder, got "
                f"{type(recorder).__name__}; core recorders do not run inside JAX."
            )
    pairs = tuple(recorders.items())

    def init(example: Any) -> NamedState:
        return NamedState([(name, r.init(example)) for name, r in pairs])

    def step(state: NamedState, data: Any, active: Any = True) -> NamedState:
        # Probe each recorder for a refusal (the probes' buffer writes are unused
        # and compiled away), then step each unless another one refused.
        refused = [
            refusals(r.step(state[name], data, active)) != refusals(state[name])
            for name, r in pairs
        ]
        stepped = []
        for i, (name, r) in enumerate(pairs):
            others = jnp.any(jnp.stack([f for j, f in enumerate(refused) if j != i] or [False]))
            stepped.append((name, r.step(state[name], data, active & (others ^ True))))
        return NamedState(stepped)

    return Recorder(init, step)
