"""The recorders inside JAX: frames, steps and episode statistics in fixed-shape rings.

Every decision (admission, overflow, counting, episode sums) is a rule of
:mod:`funrec.rules`, evaluated on traced arrays; only the storage differs from
the core: a state is a pytree of fixed-shape arrays, a ring ``[capacity, ...]``
with a slot index and scalar counters, so it can be a ``lax.scan`` carry and a
``vmap`` operand. A step writes one slot in place (see ``_put``): it never
rewrites the buffer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

from funrec import rules
from funrec.errors import RecorderError
from funrec.layout import (
    Layout,
    LayoutError,
    count_out_of_range,
    first_scale,
    in_range,
    scale_warning,
    to_uint8,
)
from funrec.recorder import Counts
from funrec_jax._arrays import (
    Key,
    check_fits,
    done_flags,
    done_keys,
    int32,
    is_concrete,
    layout_of,
    leaf_keys,
    read,
)

State = Any


class Recorder(NamedTuple):
    """A recorder inside JAX: two pure, traceable functions.

    Attributes:
        init: ``init(example) -> state``. The example (a pytree of arrays, or of
            ``jax.ShapeDtypeStruct``) fixes every shape of the state, as optax's
            ``init(params)`` does.
        step: ``step(state, data, active=True) -> state``, the state after one more
            step. ``active`` (a traced bool) set to False leaves the state as if the
            step never happened; gates pass it down.

    Example:
        >>> import jax.numpy as jnp, funrec_jax
        >>> rec = funrec_jax.frames(max_frames=8)
        >>> data = {"pixels": jnp.zeros((16, 16, 3), jnp.uint8)}
        >>> state = rec.step(rec.init(data), data)
    """

    init: Callable[[Any], State]
    step: Callable[..., State]


class Refused(NamedTuple):
    """Items a state refused, as the core would have raised: reported by ``export``.

    Attributes:
        full: items refused because the buffer was full under ``overflow="error"``.
        values: frames refused because their integer values lie outside [0, 255].
    """

    full: jax.Array
    values: jax.Array


class FramesState(NamedTuple):
    """State of :func:`frames`: a ring of uint8 frames.

    Attributes:
        items: uint8 ``[capacity, *frame]``, each frame in its input's channel
            position with 1 or 3 channels (the alpha channel is not kept).
        next: the slot the next frame is written to.
        held: how many frames the ring holds (the oldest at ``next - held``).
        counts: :class:`funrec.Counts` of int32 scalars.
        scale: the float scale of the stream, 0 until decided, then 1 or 255.
        nonfinite: NaN and infinite values met in recorded float frames.
        clipped: finite values of recorded float frames outside [0, 255] once scaled.
        refused: what the core would have raised on, counted.
        layout: the stream's layout (static; its scale is ``scale``).
    """

    items: jax.Array
    next: jax.Array
    held: jax.Array
    counts: Counts
    scale: jax.Array
    nonfinite: jax.Array
    clipped: jax.Array
    refused: Refused
    layout: Layout


class TensorDictsState(NamedTuple):
    """State of :func:`tensordicts`: a ring per array of the recorded pytree.

    Attributes:
        items: the recorded (nested) dict, each array ``[capacity, *shape]``.
        next: the slot the next step is written to.
        held: how many steps the ring holds.
        counts: :class:`funrec.Counts` of int32 scalars.
        refused: what the core would have raised on, counted.
        batch_dims: how many leading dims of every array are the TensorDict's batch (static).
    """

    items: Any
    next: jax.Array
    held: jax.Array
    counts: Counts
    refused: Refused
    batch_dims: int


class EpisodeRing(NamedTuple):
    """Finished episodes as arrays ``[capacity]``: the numeric fields of :class:`funrec.Episode`.

    (An episode's ``origin`` is a string, which a pytree cannot carry; ``export``
    gives core episodes, which :func:`funrec.with_origin` marks.)
    """

    env: jax.Array
    total_reward: jax.Array
    length: jax.Array


class EpisodeStatsState(NamedTuple):
    """State of :func:`episode_stats`: a ring of finished episodes and running sums.

    Attributes:
        items: an :class:`EpisodeRing`.
        next: the slot the next episode is written to.
        held: how many episodes the ring holds.
        counts: :class:`funrec.Counts` of finished episodes.
        running_reward: float32 ``[n]``, the return so far of each sub-env's episode.
        running_length: int32 ``[n]``, its steps so far.
        refused: what the core would have raised on, counted.
        reward_key: the key of the reward (static).
        done_keys: the done keys of the stream (static), decided by ``init``.
    """

    items: EpisodeRing
    next: jax.Array
    held: jax.Array
    counts: Counts
    running_reward: jax.Array
    running_length: jax.Array
    refused: Refused
    reward_key: Key
    done_keys: tuple[Key, ...]


def _register_static_last(cls: type, n: int = 1) -> None:
    """A NamedTuple pytree whose last ``n`` fields are static structure, not data."""
    jax.tree_util.register_pytree_node(
        cls, lambda s: (tuple(s)[:-n], tuple(s)[-n:]), lambda static, data: cls(*data, *static)
    )


_register_static_last(FramesState)
_register_static_last(TensorDictsState)
_register_static_last(EpisodeStatsState, 2)

RING_STATES = (FramesState, TensorDictsState, EpisodeStatsState)


def frames(
    key: Key = "pixels",
    *,
    skip: int = 1,
    max_frames: int,
    overflow: str = "drop_newest",
    layout: str | Layout | None = None,
) -> Recorder:
    """Records video frames into a ring of ``max_frames`` uint8 frames, inside JAX.

    The core's ``frames`` under ``jit``, ``scan`` and ``vmap``: same parameters,
    same counts, same frames once exported. The layout is decided at trace time
    from the example's static shape and dtype (the core's rule); the scale of a
    float stream from the example's values when they are known, else from the
    first recorded frame, and kept in the state. A shape or dtype that does not
    fit raises at trace time; integer values outside [0, 255] and a full ring
    under ``overflow="error"`` refuse the frame and are counted in
    ``state.refused``, reported by :func:`funrec_jax.export`.

    Args:
        key: the key of the frames in the step's data (nested keys as tuples).
        skip: record one frame in ``skip`` (the gate :func:`every` in front).
        max_frames: the capacity of the ring (static): the most frames held at once.
        overflow: ``"drop_newest"``, ``"drop_oldest"`` or ``"error"``, as in the core.
        layout: an order hint (``"HWC"``, ``"CHW"``, ``"HW"``) or a full ``funrec.Layout``.

    Returns:
        A :class:`Recorder` whose state is a :class:`FramesState` (inside a
        ``GateState`` when ``skip > 1``).

    Example:
        >>> import jax, jax.numpy as jnp, funrec, funrec_jax
        >>> rec = funrec_jax.frames(max_frames=4)
        >>> data = {"pixels": jnp.zeros((8, 8, 3), jnp.uint8)}
        >>> state = jax.jit(rec.step)(rec.init(data), data)
        >>> funrec.counts(funrec_jax.export(state))
        Counts(seen=1, recorded=1, skipped=0, dropped=0)
    """
    _check_buffer_args(skip, max_frames, overflow, "max_frames")
    who = f"frames({key!r})"

    def init(example: Any) -> FramesState:
        x = read(example, key, who)
        chosen = _named_layout_error(who, layout_of, x, layout)
        known = is_concrete(x) or isinstance(layout, Layout)
        if is_concrete(x) and not isinstance(layout, Layout):
            message = scale_warning(x, chosen, key)  # as the core warns on init(example)
            if message is not None:
                warnings.warn(f"{who}: {message}", RuntimeWarning, stacklevel=2)
        return FramesState(
            items=jnp.zeros((max_frames, *_stored_shape(chosen)), jnp.uint8),
            next=int32(),
            held=int32(),
            counts=_zero_counts(),
            scale=int32(chosen.scale if known else 0),
            nonfinite=int32(),
            clipped=int32(),
            refused=Refused(int32(), int32()),
            layout=chosen,
        )

    def step(state: FramesState, data: Any, active: Any = True) -> FramesState:
        lay = state.layout
        value = read(data, key, who)
        _named_layout_error(who, check_fits, value, lay)
        x = jnp.asarray(value)
        rgb = _drop_alpha(x, lay)
        admission = rules.admit(state.held, max_frames, overflow)
        attempt = active & admission.record
        bad = attempt & (in_range(rgb) ^ True)
        write = attempt & (bad ^ True)
        full = active & admission.full
        scale = rules.pick(write & (state.scale == 0), first_scale(x), state.scale)
        nonfinite, clipped = count_out_of_range(x, scale)
        items, nxt, held = _put(
            state.items, state.next, state.held, to_uint8(rgb, scale), write, admission.evict
        )
        return FramesState(
            items,
            nxt,
            held,
            _count(state.counts, admission, active & ((full | bad) ^ True)),
            scale,
            state.nonfinite + write * nonfinite,
            state.clipped + write * clipped,
            Refused(state.refused.full + full, state.refused.values + bad),
            lay,
        )

    return _skipped(skip, Recorder(init, step))


def tensordicts(
    keys: Sequence[Key] | None = None,
    *,
    skip: int = 1,
    max_steps: int,
    overflow: str = "drop_newest",
    batch_dims: int = 0,
) -> Recorder:
    """Records the arrays of each step (a nested dict) into rings, inside JAX.

    Exported, the state is the core's ``tensordicts()`` state: a TensorDict per
    recorded step.

    Args:
        keys: the keys to keep (nested keys as tuples), or None for every array.
        skip: record one step in ``skip`` (the gate :func:`every` in front).
        max_steps: the capacity of the rings (static).
        overflow: ``"drop_newest"``, ``"drop_oldest"`` or ``"error"``, as in the core.
        batch_dims: how many leading dims of every array are the batch of the
            exported TensorDicts (0: each step is one TensorDict of batch size ``[]``).

    Returns:
        A :class:`Recorder` whose state is a :class:`TensorDictsState`.

    Example:
        >>> import jax.numpy as jnp, funrec, funrec_jax
        >>> rec = funrec_jax.tensordicts(["obs"], max_steps=16)
        >>> data = {"obs": jnp.arange(3.0), "t": jnp.int32(0)}
        >>> funrec.trajectory(funrec_jax.export(rec.step(rec.init(data), data)))["obs"]
        tensor([[0., 1., 2.]])
    """
    _check_buffer_args(skip, max_steps, overflow, "max_steps")
    if isinstance(keys, str):
        raise RecorderError(f"tensordicts(keys): pass a list of keys, e.g. [{keys!r}].")
    if not isinstance(batch_dims, int) or isinstance(batch_dims, bool) or batch_dims < 0:
        raise RecorderError(f"tensordicts(batch_dims=...): an integer >= 0, got {batch_dims!r}.")
    who = f"tensordicts({list(keys) if keys is not None else None!r})"

    def kept(data: Any) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for key in keys if keys is not None else leaf_keys(data):
            path = (key,) if isinstance(key, str) else tuple(key)
            node = chosen
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = jnp.asarray(read(data, key, who))
        return chosen

    def init(example: Any) -> TensorDictsState:
        arrays = kept(example)
        shapes = {tuple(a.shape[:batch_dims]) for a in jax.tree.leaves(arrays)}
        if len(shapes) > 1 or any(len(s) < batch_dims for s in shapes):
            raise RecorderError(
                f"{who}: batch_dims={batch_dims}, but the arrays start with different shapes "
                f"{sorted(shapes)}; every array must share its first batch_dims dims."
            )
        return TensorDictsState(
            items=jax.tree.map(lambda a: jnp.zeros((max_steps, *a.shape), a.dtype), arrays),
            next=int32(),
            held=int32(),
            counts=_zero_counts(),
            refused=Refused(int32(), int32()),
            batch_dims=batch_dims,
        )

    def step(state: TensorDictsState, data: Any, active: Any = True) -> TensorDictsState:
        arrays = kept(data)
        expected = jax.tree.map(lambda a: (a.shape[1:], a.dtype), state.items)
        got = jax.tree.map(lambda a: (a.shape, a.dtype), arrays)
        if jax.tree.structure(state.items) != jax.tree.structure(arrays) or expected != got:
            raise RecorderError(
                f"{who}: got arrays {got}, but this stream started with {expected}. Record "
                "each structure with its own recorder, or start a new state."
            )
        admission = rules.admit(state.held, max_steps, overflow)
        write = active & admission.record
        full = active & admission.full
        items, nxt, held = _put(state.items, state.next, state.held, arrays, write, admission.evict)
        return TensorDictsState(
            items,
            nxt,
            held,
            _count(state.counts, admission, active & (full ^ True)),
            Refused(state.refused.full + full, state.refused.values),
            batch_dims,
        )

    return _skipped(skip, Recorder(init, step))


def episode_stats(
    reward_key: Key = ("next", "reward"),
    done_key: Key | None = None,
    *,
    max_episodes: int = 1024,
    overflow: str = "drop_newest",
) -> Recorder:
    """Records the return and length of every finished episode, per sub-env, inside JAX.

    The running sums and the episode ring follow :func:`funrec.rules.episode_step`
    and :func:`funrec.rules.admit`. Under ``vmap`` each env has its own state;
    ``export`` numbers the envs of a batched state in order.

    Args:
        reward_key: the key of the reward, shaped ``[*batch]`` or ``[*batch, 1]``.
        done_key: the done key to read; None reads every done key of the example
            (:func:`funrec.rules.done_paths`: each leaf named ``"done"``, under
            ``"next"`` when there is one), each ``[*batch]`` or ``[*batch, ...]``.
        max_episodes: the capacity of the episode ring (static).
        overflow: ``"drop_newest"``, ``"drop_oldest"`` or ``"error"``, as in the core.

    Returns:
        A :class:`Recorder` whose state is an :class:`EpisodeStatsState`.

    Example:
        >>> import jax.numpy as jnp, funrec, funrec_jax
        >>> rec = funrec_jax.episode_stats()
        >>> step = lambda r, d: {"next": {"reward": jnp.float32(r), "done": jnp.bool_(d)}}
        >>> state = rec.init(step(0.0, False))
        >>> for r, d in [(1.0, False), (2.0, True)]:
        ...     state = rec.step(state, step(r, d))
        >>> funrec.episodes(funrec_jax.export(state))
        (Episode(env=0, total_reward=3.0, length=2),)
    """
    _check_buffer_args(1, max_episodes, overflow, "max_episodes")
    who = "episode_stats()"

    def batch(data: Any) -> tuple[int, ...]:
        """The batch shape of a step: the reward's shape, ``[*batch]`` or ``[*batch, 1]``."""
        shape = jnp.shape(read(data, reward_key, who))
        return shape[:-1] if shape[-1:] == (1,) else shape

    def init(example: Any) -> EpisodeStatsState:
        n = math.prod(batch(example))
        keys = (done_key,) if done_key is not None else done_keys(example, who)
        jax.eval_shape(lambda d: done_flags(d, keys, batch(d), who), example)  # shapes
        return EpisodeStatsState(
            items=EpisodeRing(
                env=jnp.zeros(max_episodes, jnp.int32),
                total_reward=jnp.zeros(max_episodes, jnp.float32),
                length=jnp.zeros(max_episodes, jnp.int32),
            ),
            next=int32(),
            held=int32(),
            counts=_zero_counts(),
            running_reward=jnp.zeros(n, jnp.float32),
            running_length=jnp.zeros(n, jnp.int32),
            refused=Refused(int32(), int32()),
            reward_key=reward_key,
            done_keys=keys,
        )

    def step(state: EpisodeStatsState, data: Any, active: Any = True) -> EpisodeStatsState:
        shape = batch(data)
        n = math.prod(shape)
        if n != state.running_reward.shape[0]:
            raise RecorderError(
                f"{who}: got {n} sub-envs, but this stream started with "
                f"{state.running_reward.shape[0]}. Use one state per batch size."
            )
        rewards = jnp.asarray(read(data, reward_key, who)).reshape(n)
        dones = done_flags(data, state.done_keys, shape, who).reshape(n)
        items, nxt, held, counts = state.items, state.next, state.held, state.counts
        full = jnp.asarray(False)
        totals, lengths = [], []
        for env in range(n):  # static: one unrolled write per sub-env
            ended_total, ended_length, total, length = rules.episode_step(
                state.running_reward[env], state.running_length[env], rewards[env], dones[env]
            )
            ended = dones[env]
            admission = rules.admit(held, max_episodes, overflow)
            episode = EpisodeRing(int32(env), ended_total.astype(jnp.float32), ended_length)
            write = ended & admission.record
            items, nxt, held = _put(items, nxt, held, episode, write, admission.evict)
            counts = _count(counts, admission, ended)
            full = full | (ended & admission.full)
            totals.append(total)
            lengths.append(length)
        # The core raises on a full ring under "error" and keeps the state it had:
        # a refused step changes nothing but the refusal count (the ring is small).
        took = active & (full ^ True)
        new = EpisodeStatsState(
            items,
            nxt,
            held,
            counts,
            jnp.stack(totals).astype(jnp.float32),
            jnp.stack(lengths).astype(jnp.int32),
            state.refused,
            reward_key,
            state.done_keys,
        )
        kept = jax.tree.map(lambda a, b: jnp.where(took, a, b), new, state)
        return kept._replace(
            refused=Refused(state.refused.full + (active & full), state.refused.values)
        )

    return Recorder(init, step)


def _put(
    items: Any, slot: jax.Array, held: jax.Array, value: Any, write: Any, evict: Any
) -> tuple[Any, jax.Array, jax.Array]:
    """Writes ``value`` at ``slot`` of every ring where ``write``, else what it held.

    One item is written, never the buffer: under ``vmap`` a ``lax.cond`` around
    the write would become a select over the whole buffer, so a batched write is
    a loop of one in-place slot write per env (``_write_slots``).
    """
    capacity = jax.tree.leaves(items)[0].shape[0]
    write = jnp.asarray(write)
    items = jax.tree.map(
        lambda ring, new: _write_slot(ring, slot, jnp.asarray(new).astype(ring.dtype), write),
        items,
        value,
    )
    return items, (slot + write) % capacity, held + (write & (evict ^ True))


@custom_vmap
def _write_slot(ring: jax.Array, slot: jax.Array, new: jax.Array, write: jax.Array) -> jax.Array:
    """``ring`` with ``new`` at ``slot`` where ``write``, else ``ring`` untouched.

    One env's ring: the ``lax.cond`` is a real branch around an in-place write
    (a ``jnp.where`` against the slot's old item would copy that item out first).
    """
    return lax.cond(
        write, lambda r: lax.dynamic_update_index_in_dim(r, new, slot, 0), lambda r: r, ring
    )


@_write_slot.def_vmap
def _write_slots(
    size: int, batched: Sequence[bool], ring: jax.Array, slot: Any, new: Any, write: Any
) -> tuple[jax.Array, bool]:
    # vmap would turn the per-env slot into a scatter, which XLA's CPU backend runs
    # element by element (measured: 10x the rollout on XLand, N=8); a loop of one
    # in-place dynamic_update_slice per env writes each env's frame once.
    ring, slot, new, write = (
        x if b else jnp.broadcast_to(x, (size, *jnp.shape(x)))
        for x, b in zip((ring, slot, new, write), batched, strict=True)
    )

    def one(env: jax.Array, ring: jax.Array) -> jax.Array:
        start = (env, slot[env]) + (0,) * (new.ndim - 1)
        shape = (1, 1, *new.shape[1:])
        old = lax.dynamic_slice(ring, start, shape)
        chosen = jnp.where(write[env], new[env].reshape(shape), old)
        return lax.dynamic_update_slice(ring, chosen, start)

    return lax.fori_loop(0, size, one, ring), True


def _count(counts: Counts, admission: rules.Admission, took: Any) -> Counts:
    """``rules.count`` where the item was taken, else the counts unchanged."""
    after = rules.count(counts, admission)
    return Counts(*(rules.pick(took, a, b) for a, b in zip(after, counts, strict=True)))


def _zero_counts() -> Counts:
    return Counts(int32(), int32(), int32(), int32())


def _skipped(skip: int, recorder: Recorder) -> Recorder:
    if skip == 1:
        return recorder
    from funrec_jax.combinators import every

    return every(skip, recorder)


def _check_buffer_args(skip: int, capacity: Any, overflow: str, name: str) -> None:
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 1:
        raise RecorderError(f"skip must be an integer >= 1 (1 records every item), got {skip!r}.")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
        raise RecorderError(
            f"{name} must be a positive integer: inside JAX the ring's capacity is static "
            f"(its shape), got {capacity!r}."
        )
    if overflow not in rules.OVERFLOW_POLICIES:
        raise RecorderError(f"overflow must be one of {rules.OVERFLOW_POLICIES}, got {overflow!r}.")


def _named_layout_error(who: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except LayoutError as err:
        raise LayoutError(f"{who}: {err}") from err


def _stored_shape(layout: Layout) -> tuple[int, ...]:
    c = min(layout.channels, 3)
    h, w = layout.height, layout.width
    image = {"HWC": (h, w, c), "CHW": (c, h, w), "HW": (h, w)}[layout.order]
    return (*layout.batch_shape, *image)


def _drop_alpha(x: jax.Array, layout: Layout) -> jax.Array:
    if layout.channels != 4:
        return x
    return x[..., :3] if layout.order == "HWC" else x[..., :3, :, :]
