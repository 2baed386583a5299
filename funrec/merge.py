"""Merging states: the states of one recorder over independent streams form a monoid.

Fold where the data is (a worker, a process, a machine), ship the small state,
and ``merge`` it with the others: ``init()`` is the identity, counts add,
finished episodes concatenate (``a``'s first) and keep their ``origin``, and
running values of unfinished episodes are kept side by side. Streams whose
items are in time order — frames and TensorDict steps — are never
interleaved: merging two states that both hold such items raises, so keep
them apart under different names of a ``named`` state (whose merge is the
union of its names) or drain each to its own file where it was recorded.
"""

from __future__ import annotations

import functools
from typing import Any

from funrec.combinators import GateState, NamedState
from funrec.errors import RecorderError
from funrec.recorder import Counts, State
from funrec.recorders import EpisodeStatsState, FramesState, TensorDictsState


@functools.singledispatch
def merge(a: State, b: State) -> State:
    """Combines the states of one recorder folded over two independent streams.

    Args:
        a: a state (e.g. from worker 0).
        b: a state of the same recorder (e.g. from worker 1).

    Returns:
        The state of both streams: ``merge(init(), s) == s == merge(s, init())``
        and ``merge(merge(a, b), c) == merge(a, merge(b, c))``.

    Raises:
        RecorderError: the states are of different recorders, or both hold
            frames or steps (streams that cannot be interleaved); a state type
            funrec does not know (register one with ``@funrec.merge.register``).

    Example:
        >>> import funrec
        >>> rec = funrec.episode_stats()
        >>> funrec.merge(rec.init(), rec.init()) == rec.init()
        True
    """
    raise RecorderError(
        f"merge(): {type(a).__name__} is not a state funrec can merge; register one with "
        f"@funrec.merge.register def _(a: {type(a).__name__}, b): ..."
    )


def _same_kind(a: State, b: State) -> None:
    if type(a) is not type(b):
        raise RecorderError(
            f"merge(): got a {type(a).__name__} and a {type(b).__name__}; merge the states "
            "of one recorder."
        )


def _counts(a: Counts, b: Counts) -> Counts:
    return Counts(*(x + y for x, y in zip(a, b, strict=True)))


def _one_stream(a: State, b: State, what: str) -> Any:
    if len(a.items) and len(b.items):
        raise RecorderError(
            f"merge(): both states hold {what} ({len(a.items)} and {len(b.items)}): two "
            f"streams of {what} are never interleaved into one. Drain each to its own file "
            "where it was recorded, or keep them under different names of a named(...) state."
        )
    return a.items if len(a.items) else b.items


def _agree(a: Any, b: Any, what: str) -> Any:
    if a is not None and b is not None and a != b:
        raise RecorderError(f"merge(): the streams have different {what}s: {a!r} and {b!r}.")
    return a if a is not None else b


@merge.register
def _(a: FramesState, b: State) -> FramesState:
    _same_kind(a, b)
    return FramesState(
        _one_stream(a, b, "frames"),
        _counts(a.counts, b.counts),
        _agree(a.layout, b.layout, "layout"),
        a.nonfinite + b.nonfinite,
        a.clipped + b.clipped,
    )


@merge.register
def _(a: TensorDictsState, b: State) -> TensorDictsState:
    _same_kind(a, b)
    return TensorDictsState(
        _one_stream(a, b, "steps"),
        _counts(a.counts, b.counts),
        _agree(a.batch_size, b.batch_size, "batch size"),
    )


@merge.register
def _(a: EpisodeStatsState, b: State) -> EpisodeStatsState:
    _same_kind(a, b)
    items = a.items
    for episode in b.items:
        items = items.append(episode)
    return EpisodeStatsState(
        items,
        _counts(a.counts, b.counts),
        a.running_reward + b.running_reward,
        a.running_length + b.running_length,
        _agree(a.reward_key, b.reward_key, "reward key"),
        _agree(a.done_keys, b.done_keys, "done key"),
    )


@merge.register
def _(a: GateState, b: State) -> GateState:
    _same_kind(a, b)
    return GateState(merge(a.inner, b.inner), *(x + y for x, y in zip(a[1:], b[1:], strict=True)))


@merge.register
def _(a: NamedState, b: State) -> NamedState:
    _same_kind(a, b)
    merged = dict(a)
    for name, state in b.items():
        merged[name] = merge(merged[name], state) if name in merged else state
    return NamedState(merged)
