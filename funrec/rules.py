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

from typing import Any, NamedTuple

import torch
from tensordict import TensorDictBase

from funrec.errors import RecorderError

__all__ = [
    "OVERFLOW_POLICIES",
    "Admission",
    "admit",
    "count",
    "done_flags",
    "done_keys",
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


def done_keys(td: TensorDictBase) -> tuple[tuple[str, ...], ...]:
    """Every done key of a TensorDict: each leaf whose last name is ``"done"``.

    Under ``"next"`` when the TensorDict has a ``"next"`` entry (a transition),
    else at its root (what an env step returns); nested ones included.

    Raises:
        MissingKeyError: there is no done key.

    Example:
        >>> from tensordict import TensorDict
        >>> done_keys(TensorDict({"next": {"done": torch.zeros(1, dtype=torch.bool)}}))
        (('next', 'done'),)
    """
    from funrec.recorder import read_key  # the one place keys are read

    nested = "next" in td
    root = td.get("next") if nested else td
    prefix: tuple[str, ...] = ("next",) if nested else ()
    keys: tuple[tuple[str, ...], ...] = ()
    if isinstance(root, TensorDictBase):
        for key in root.keys(include_nested=True, leaves_only=True):
            key = key if isinstance(key, tuple) else (key,)
            if key[-1] == "done":
                keys += (prefix + key,)
    if not keys:
        read_key(td, (*prefix, "done"), "done_keys()")
    return keys


def done_flags(td: TensorDictBase, keys: Any = None) -> torch.Tensor:
    """Which sub-envs ended an episode at this step: one bool per batch entry.

    The episode-end rule of every recorder, gate, writer and adapter. With
    ``keys=None`` it reads every done key of the TensorDict
    (:func:`done_keys`: nested ones, such as multi-agent groups, included). Each
    is reduced to the batch shape with ``any`` over its trailing dims, and the
    keys are or-ed.

    Args:
        td: a step's TensorDict, batch size ``[*batch]``.
        keys: the done keys to read (nested keys as tuples), or None for all.

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
    elif isinstance(keys, (str, tuple)):
        keys = (keys,)
    if not keys:
        raise RecorderError("done_flags(): no done keys given; pass keys=None to read them all.")
    batch = td.batch_size
    flags: torch.Tensor | None = None
    for key in keys:
        value = read_key(td, key, "done_flags()")
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value)
        if value.shape != batch:
            if value.shape[: len(batch)] != batch:
                raise RecorderError(
                    f"done_flags(): key {key!r} has shape {tuple(value.shape)}, which does not "
                    f"start with the batch size {tuple(batch)}; a done flag is [*batch] or "
                    "[*batch, ...]."
                )
            # one value per sub-env ([*batch, 1]): a reshape; more (agents...): any of them
            single = value.numel() == batch.numel()
            value = value.reshape(batch) if single else value.reshape(*batch, -1).any(-1)
        value = value if value.dtype == torch.bool else value.bool()
        flags = value if flags is None else flags | value
    assert flags is not None  # keys is not empty
    return flags.cpu()
