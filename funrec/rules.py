"""The recording rules, written once, as arithmetic.

Every decision a recorder makes — which item a gate lets through, whether a
buffer keeps, drops or evicts, when an episode ends — is a function here. The
counter rules are plain integer/boolean arithmetic: the same code runs on
Python ints, on torch tensors and on traced jax arrays (``funrec_jax`` reuses
them inside ``jax.jit``). Flags are negated as ``flag ^ True``, chosen between
with :func:`pick`, and never branched on, so no rule looks at a value it may
not see under tracing. Only static settings (a capacity, an overflow policy)
are Python values that a rule may branch on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from tensordict import TensorDictBase

from funrec.errors import RecorderError

__all__ = [
    "OVERFLOW_POLICIES",
    "Admission",
    "admit",
    "any_done",
    "capped_cubic",
    "count",
    "done_flags",
    "done_keys",
    "done_paths",
    "episode_step",
    "periodic",
    "pick",
    "window",
]

OVERFLOW_POLICIES = ("drop_newest", "drop_oldest", "error")

Flag = Any  # a bool, or a bool tensor/array
Number = Any  # an int or float, or a tensor/array of them


def pick(flag: Flag, if_true: Number, if_false: Number) -> Number:
    """``if_true`` where ``flag`` is set, else ``if_false``, without branching.

    Example:
        >>> pick(True, 3, 5), pick(False, 3, 5)
        (3, 5)
    """
    return flag * if_true + (flag ^ True) * if_false


def periodic(index: Number, n: int) -> Flag:
    """Whether item ``index`` (from 0) is one of every ``n``: the 1st, the ``n+1``-th, ...

    The rule of ``every(n)`` and of a recorder's ``skip=n``.

    Example:
        >>> [periodic(i, 3) for i in range(5)]
        [True, False, False, True, False]
    """
    return index % n == 0


class Admission(NamedTuple):
    """What a buffer does with an item that reached it.

    Attributes:
        record: the item is kept.
        evict: the oldest held item leaves first (``"drop_oldest"`` on a full buffer).
        dropped: one item is lost to the overflow policy (the new one, or the evicted one).
        full: the buffer is full and the policy is ``"error"``: the caller raises.
    """

    record: Flag
    evict: Flag
    dropped: Flag
    full: Flag


def capped_cubic(episode: Number) -> Flag:
    """True at episodes 0, 1, 8, 27, ..., 729, then at every 1000th episode.

    The default schedule of gymnasium's ``RecordVideo``, for ``on_episodes``
    eagerly and inside ``jax.jit`` (``funrec_jax.on_episodes``): comparisons
    with the ten cubes below 1000, no branch on the episode index.

    Args:
        episode: the episode index, from 0 (an int, or an integer tensor/array).

    Returns:
        Whether to record that episode (a bool, or a bool tensor/array).

    Example:
        >>> [e for e in range(30) if capped_cubic(e)]
        [0, 1, 8, 27]
    """
    flag = episode % 1000 == 0  # 0, 1000, 2000, ...
    for root in range(1, 10):
        flag = flag | (episode == root**3)
    return flag


def admit(held: Number, capacity: int | None, overflow: str) -> Admission:
    """The admission rule of a buffer holding ``held`` items.

    Args:
        held: how many items the buffer holds before this one.
        capacity: the most items it may hold (static), or None for no bound.
        overflow: the static policy when it is full: ``"drop_newest"``,
            ``"drop_oldest"`` or ``"error"``.

    Returns:
        An :class:`Admission` of flags.

    Example:
        >>> admit(held=2, capacity=2, overflow="drop_oldest")
        Admission(record=True, evict=True, dropped=True, full=False)
    """
    if overflow not in OVERFLOW_POLICIES:
        raise RecorderError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}.")
    over = held >= capacity if capacity is not None else held < 0
    room = over ^ True
    if overflow == "drop_oldest":
        return Admission(record=over | room, evict=over, dropped=over, full=over & False)
    if overflow == "drop_newest":
        return Admission(record=room, evict=over & False, dropped=over, full=over & False)
    return Admission(record=room, evict=over & False, dropped=over & False, full=over)


def count(counts: Any, admission: Admission) -> Any:
    """The counters after one item that reached a buffer, as ``admission`` decided.

    Args:
        counts: a :class:`funrec.Counts` (of ints, or of tensors/arrays).
        admission: what :func:`admit` decided for the item.

    Returns:
        The next ``Counts``. An eviction counts the new item in and the oldest out
        (``recorded`` stays, ``dropped`` grows). A full buffer under ``"error"`` counts nothing: the
        caller raises (eager) or reports a flag (JAX) and the item is not seen.

    Example:
        >>> from funrec import Counts
        >>> count(Counts(), admit(0, None, "error"))
        Counts(seen=1, recorded=1, skipped=0, dropped=0)
    """
    seen, recorded, skipped, dropped = counts
    entered = admission.full ^ True
    return type(counts)(
        seen + entered,
        recorded + (admission.record & entered & (admission.evict ^ True)),
        skipped,
        dropped + admission.dropped,
    )


def window(remaining: Number, triggered: Flag, length: int) -> tuple[Flag, Number]:
    """The rule of ``on_steps``: a trigger opens a window of ``length`` steps.

    A trigger inside an open window does not extend it.

    Args:
        remaining: steps left in the open window before this step (0: none open).
        triggered: whether the trigger fires at this step.
        length: the window length, >= 1 (static).

    Returns:
        ``(passes, remaining_after)``.

    Example:
        >>> window(0, True, 3), window(1, True, 3)
        ((True, 2), (True, 0))
    """
    opened = pick(remaining > 0, remaining, triggered * length)
    passes = opened > 0
    return passes, pick(passes, opened - 1, 0)


def episode_step(
    total: Number, length: Number, reward: Number, done: Flag
) -> tuple[Number, Number, Number, Number]:
    """One step of a running episode: add the reward, and start anew where it ended.

    Args:
        total: the return so far of the current episode.
        length: its steps so far.
        reward: this step's reward.
        done: whether this step ended the episode.

    Returns:
        ``(ended_total, ended_length, total_after, length_after)``: the episode
        with this step (what is recorded where ``done``), and the running values
        for the next step (zero where ``done``).

    Example:
        >>> episode_step(2.0, 2, 1.0, True)
        (3.0, 3, 0.0, 0)
    """
    total, length = total + reward, length + 1
    going = done ^ True
    return total, length, total * going, length * going


def done_paths(paths: Iterable[Any]) -> tuple[tuple[Any, ...], ...]:
    """The done keys among the leaf keys of one step: the episode-end key rule.

    A done key is a leaf whose last name is ``"done"``, nested ones included;
    only those under ``"next"`` when the step has a ``"next"`` entry (a
    transition), else those anywhere (what an env step returns). The same rule
    for a TensorDict's keys and for a pytree's key paths (``funrec_jax``).

    Args:
        paths: the key of every leaf, as a name or a tuple of names.

    Returns:
        The done keys, as tuples, in the order given; empty when there is none.

    Example:
        >>> done_paths([("next", "done"), ("next", "agents", "done"), ("done",), "reward"])
        (('next', 'done'), ('next', 'agents', 'done'))
    """
    paths = [path if isinstance(path, tuple) else (path,) for path in paths]
    nested = any(path[0] == "next" for path in paths)
    return tuple(p for p in paths if p[-1] == "done" and (p[0] == "next" or not nested))


def done_keys(td: TensorDictBase) -> tuple[tuple[str, ...], ...]:
    """Every done key of a TensorDict (:func:`done_paths` of its leaf keys).

    Raises:
        MissingKeyError: there is no done key.

    Example:
        >>> from tensordict import TensorDict
        >>> done_keys(TensorDict({"next": {"done": torch.zeros(1, dtype=torch.bool)}}))
        (('next', 'done'),)
    """
    from funrec.recorder import read_key  # the one place keys are read

    # Only the part of td the rule can pick from is listed: "next" when there is one.
    prefix: tuple[str, ...] = ("next",) if "next" in td else ()
    root = td.get("next") if prefix else td
    leaves = root.keys(True, True) if isinstance(root, TensorDictBase) else ()  # nested leaves
    keys = done_paths(prefix + (k if isinstance(k, tuple) else (k,)) for k in leaves)
    if not keys:
        read_key(td, (*prefix, "done"), "done_keys()")
    return keys


def any_done(values: Mapping[Any, Any], batch: tuple[int, ...]) -> Any:
    """One episode-end flag per sub-env from the values of the done keys.

    Each value, ``[*batch]`` or ``[*batch, ...]`` (multi-agent groups...), is
    reduced to ``[*batch]`` with ``any`` over its trailing dims, and the keys are
    or-ed. Arithmetic on torch, numpy and (traced) jax arrays alike.

    Args:
        values: the value of each done key, by key (the keys name it in errors).
        batch: the batch shape, e.g. a TensorDict's ``batch_size``.

    Returns:
        A bool array ``[*batch]`` of the values' kind.

    Raises:
        RecorderError: no values, or a value whose shape does not start with ``batch``.

    Example:
        >>> import numpy as np
        >>> any_done({"done": np.array([[0], [1]]), ("agents", "done"): np.zeros((2, 3))},
        ...          (2,)).tolist()
        [False, True]
    """
    batch = tuple(batch)
    flags = None
    for key, value in values.items():
        shape = tuple(value.shape)
        if shape != batch:
            if shape[: len(batch)] != batch:
                raise RecorderError(
                    f"done_flags(): key {key!r} has shape {shape}, which does not start with "
                    f"the batch size {batch}; a done flag is [*batch] or [*batch, ...]."
                )
            # one value per sub-env ([*batch, 1]): a reshape; more (agents...): any of them
            single = math.prod(shape) == math.prod(batch)
            value = value.reshape(batch) if single else value.reshape(*batch, -1).any(-1)
        value = value if str(value.dtype).endswith("bool") else value != 0
        flags = value if flags is None else flags | value
    if flags is None:
        raise RecorderError("done_flags(): no done keys given; pass keys=None to read them all.")
    return flags


def done_flags(td: TensorDictBase, keys: Any = None) -> torch.Tensor:
    """Which sub-envs ended an episode at this step: one bool per batch entry.

    The episode-end rule of every recorder, gate, writer and adapter: the done
    keys (:func:`done_keys` with ``keys=None``: nested ones, such as multi-agent
    groups, included), each reduced per sub-env and or-ed (:func:`any_done`).

    Args:
        td: a step's TensorDict, batch size ``[*batch]``.
        keys: the done keys to read, or None for all: one key (``"done"``, a
            nested ``("next", "done")``), or a list or tuple of keys.

    Returns:
        A bool tensor of shape ``[*batch]``.

    Raises:
        MissingKeyError: a given key is missing, or there is no done key at all.

    Example:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"next": {"done": torch.tensor([[False], [True]]),
        ...                           "agents": {"done": torch.tensor([[[True]], [[False]]])}}},
        ...                 batch_size=[2])
        >>> done_flags(td).tolist()
        [True, True]
    """
    from funrec.recorder import read_key

    if keys is None:
        keys = done_keys(td)
    elif isinstance(keys, str) or (
        isinstance(keys, tuple) and keys and all(isinstance(name, str) for name in keys)
    ):
        keys = (keys,)  # one key: "done" or ("next", "done"); a list is always many keys
    values = {key: torch.as_tensor(read_key(td, key, "done_flags()")) for key in keys}
    return any_done(values, td.batch_size).cpu()
