"""Pure views of recorder states: what was recorded, and how much.

``counts`` and ``drain`` are the two questions every state answers; the other
views are read through ``drain``. Both are ``functools.singledispatch``
functions: a state is viewable when it has the fields ``items`` (a
:class:`~funrec._queue.Storage`) and ``counts`` (a :class:`~funrec.Counts`),
as the built-in states do, or when its type is registered::

    @funrec.counts.register
    def _(state: MyState) -> funrec.Counts: ...

    @funrec.drain.register
    def _(state: MyState) -> tuple[tuple, MyState]: ...

Gates (:class:`GateState`) are looked through, and a :class:`NamedState`
answers with a dict, one entry per name.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from tensordict import TensorDictBase

from funrec.combinators import GateState, NamedState
from funrec.errors import RecorderError
from funrec.images import clip, stack_frames
from funrec.recorder import Counts, State
from funrec.recorders import Episode


def _not_viewable(state: State, view: str) -> RecorderError:
    return RecorderError(
        f"{view}(): {type(state).__name__} is not a state funrec can view. Give it the fields "
        f"`items` (a funrec storage, e.g. funrec.Queue) and `counts` (funrec.Counts), or "
        f"register it: @funrec.{view}.register def _(state: {type(state).__name__}): ..."
    )


def _fields(state: State) -> tuple[str, ...]:
    return getattr(type(state), "_fields", ())


@functools.singledispatch
def counts(state: State) -> Counts | dict[str, Any]:
    """What happened to every item that entered the recorder.

    Args:
        state: a recorder state, through any nesting of gates and ``named``.

    Returns:
        :class:`Counts` (``seen == recorded + skipped + dropped``); a dict of
        them for a :class:`NamedState`.

    Raises:
        RecorderError: the state is neither registered nor has ``counts``.

    Example:
        >>> import funrec
        >>> funrec.counts(funrec.every(2, funrec.frames()).init())
        Counts(seen=0, recorded=0, skipped=0, dropped=0)
    """
    if "counts" in _fields(state) and isinstance(state.counts, Counts):
        return state.counts
    raise _not_viewable(state, "counts")


@counts.register
def _(state: GateState) -> Counts | dict[str, Any]:
    return _plus_skipped(counts(state.inner), state.skipped)


def _plus_skipped(inner: Any, skipped: Any) -> Any:
    """The gate's skips added to what is behind it (each name of a named state saw them)."""
    if isinstance(inner, dict):
        return {name: _plus_skipped(c, skipped) for name, c in inner.items()}
    return inner._replace(seen=inner.seen + skipped, skipped=inner.skipped + skipped)


@counts.register
def _(state: NamedState) -> dict[str, Any]:
    return {name: counts(s) for name, s in state.items()}


@functools.singledispatch
def drain(state: State, name: str | None = None) -> tuple[Any, State]:
    """Hands out what a state holds and returns the state emptied of it.

    The counters and the cached layout are kept, so a drained state goes on
    recording the same stream; only the held items leave. This is how the
    edges stream recordings to a writer without holding them.

    Args:
        state: a recorder state, through any nesting of gates and ``named``.
        name: drain only this entry of a ``named`` state; the others keep theirs.

    Returns:
        ``(items, emptied_state)``. ``items`` is a tuple of frames (uint8
        ``[*batch, 3, H, W]``), TensorDicts or :class:`Episode`, oldest first;
        for a :class:`NamedState` without ``name``, a dict of such tuples.

    Raises:
        RecorderError: the state is neither registered nor has ``items``.

    Example:
        >>> import funrec
        >>> items, state = funrec.drain(funrec.frames().init())
        >>> items
        ()
    """
    if name is not None:
        raise RecorderError(
            f"drain(name={name!r}): the state is {type(state).__name__}, not a named(...) state."
        )
    if "items" in _fields(state):
        return tuple(state.items), state._replace(items=type(state.items)())
    raise _not_viewable(state, "drain")


@drain.register
def _(state: GateState, name: str | None = None) -> tuple[Any, State]:
    items, inner = drain(state.inner) if name is None else drain(state.inner, name=name)
    return items, state._replace(inner=inner)


@drain.register
def _(state: NamedState, name: str | None = None) -> tuple[Any, State]:
    if name is not None:
        items, emptied = drain(state[name])
        return items, state.replace(**{name: emptied})
    drained = {n: drain(s) for n, s in state.items()}
    return {n: d[0] for n, d in drained.items()}, NamedState(
        [(n, d[1]) for n, d in drained.items()]
    )


def _held(state: State, view: str, kind: type, use: str) -> tuple[Any, ...]:
    items, _ = drain(state)
    if isinstance(items, dict):
        first = next(iter(items))
        raise RecorderError(
            f"{view}(): got the state of named({', '.join(items)}); pick one recorder's state, "
            f"e.g. {view}(state[{first!r}])."
        )
    if items and not isinstance(items[0], kind):
        raise RecorderError(
            f"{view}(): the state holds {type(items[0]).__name__} items, not {kind.__name__}; "
            f"use {use}."
        )
    return items


def video(state: State) -> torch.Tensor:
    """The frames held by a :func:`frames` state, stacked.

    Args:
        state: a state of ``frames()``, possibly inside gates.

    Returns:
        uint8 ``[T, *batch, 3, H, W]``; ``[0, 3, 0, 0]`` when nothing is held.

    Example:
        >>> import funrec
        >>> funrec.video(funrec.frames().init()).shape
        torch.Size([0, 3, 0, 0])
    """
    items = _held(state, "video", torch.Tensor, "trajectory() for TensorDicts")
    return stack_frames(items) if items else clip(())


def trajectory(state: State) -> TensorDictBase | None:
    """The TensorDicts held by a :func:`tensordicts` state, stacked along a new first dim.

    Args:
        state: a state of ``tensordicts()``, possibly inside gates.

    Returns:
        A TensorDict of batch size ``[T, *batch]``, or None when nothing is held.

    Example:
        >>> import funrec
        >>> funrec.trajectory(funrec.tensordicts().init()) is None
        True
    """
    items = _held(state, "trajectory", TensorDictBase, "video() for frames")
    return torch.stack(items) if items else None


def episodes(state: State) -> tuple[Episode, ...]:
    """The finished episodes of an :func:`episode_stats` state, in the order they ended.

    Args:
        state: a state of ``episode_stats()``, possibly inside gates.

    Returns:
        A tuple of :class:`Episode`.

    Example:
        >>> import funrec
        >>> funrec.episodes(funrec.episode_stats().init())
        ()
    """
    return _held(state, "episodes", Episode, "video() or trajectory()")
