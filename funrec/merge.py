"""Merging states: the states of one recorder over independent streams form a monoid.

Fold where the data is (a worker, a process, a machine), ship the small state,
and ``merge`` it with the others: ``init()`` is the identity, counts add,
finished episodes concatenate (``a``'s first) and keep their ``origin`` (mark
each worker's state with :func:`with_origin` before merging), and running
values of unfinished episodes are kept side by side. Streams whose items are in
time order — frames and TensorDict steps — are never interleaved: merging two
states that both hold such items raises, so keep them apart under different
names of a ``named`` state (whose merge is the union of its names) or drain
each to its own file where it was recorded.
"""

from __future__ import annotations

import functools
from typing import Any

from funrec._queue import Queue
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


@functools.singledispatch
def with_origin(state: State, origin: str) -> State:
    """Marks every finished episode a state holds as recorded at ``origin``.

    Mark each worker's state before :func:`merge`, so that the merged episodes
    still say which worker each came from (``Episode.env`` is a sub-env index
    inside its worker). An episode marked already keeps its mark under the new
    one: marking a node's merged state ``"node1"`` turns ``"worker0"`` into
    ``"node1/worker0"``. States that hold no episodes come back unchanged;
    a state type of your own that holds episodes registers with
    ``@funrec.with_origin.register``.

    Args:
        state: a state, through any nesting of gates and ``named``.
        origin: a non-empty name, e.g. ``"worker1"`` or ``"host-pid"``.

    Returns:
        The state with each held ``Episode``'s ``origin`` set.

    Example:
        >>> import funrec
        >>> from funrec import Episode, EpisodeStatsState, Queue
        >>> state = EpisodeStatsState(Queue.of([Episode(0, 3.0, 3)]))
        >>> funrec.episodes(funrec.with_origin(state, "worker1"))
        (Episode(env=0, total_reward=3.0, length=3, origin='worker1'),)
    """
    _check_origin(origin)
    return state


@with_origin.register
def _(state: EpisodeStatsState, origin: str) -> EpisodeStatsState:
    _check_origin(origin)
    # the unmarked share one string, which pickling stores once
    marked = (e._replace(origin=_under(origin, e.origin)) for e in state.items)
    return state._replace(items=Queue.of(marked))


@with_origin.register
def _(state: GateState, origin: str) -> GateState:
    _check_origin(origin)
    return state._replace(inner=with_origin(state.inner, origin))


@with_origin.register
def _(state: NamedState, origin: str) -> NamedState:
    _check_origin(origin)
    return NamedState({name: with_origin(s, origin) for name, s in state.items()})


def _under(origin: str, inner: str) -> str:
    return f"{origin}/{inner}" if inner else origin


def _check_origin(origin: object) -> None:
    if not isinstance(origin, str) or not origin:
        raise RecorderError(
            f"with_origin(origin={origin!r}): pass a non-empty string naming where the "
            'state was recorded, e.g. "worker1".'
        )
