"""Pure views of recorder states: what was recorded, and how much.

Each view looks through gates (:class:`GateState`) to the recorder inside.
``counts`` and ``drain`` also take a :class:`NamedState` and answer with a
dict, one entry per name; the other views take one recorder's state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from funrec._queue import Queue
from funrec.combinators import GateState, NamedState
from funrec.errors import RecorderError
from funrec.recorder import Counts, State
from funrec.recorders import (
    Episode,
    EpisodeStatsState,
    FramesState,
    TensorDictsState,
)


def counts(state: State) -> Counts | dict[str, Any]:
    """What happened to every item that entered the recorder.

    Args:
        state: a recorder state.

    Returns:
        :class:`Counts` (``seen == recorded + skipped + dropped``); a dict of
        them for a :class:`NamedState`.

    Example:
        >>> import funrec
        >>> funrec.counts(funrec.every(2, funrec.frames()).init())
        Counts(seen=0, recorded=0, skipped=0, dropped=0)
    """
    if isinstance(state, NamedState):
        return {name: counts(s) for name, s in state.items()}
    if isinstance(state, GateState):
        inner = counts(state.inner)
        return inner._replace(seen=state.seen, skipped=state.skipped + inner.skipped)
    return state.counts


def video(state: State) -> torch.Tensor:
    """The frames held by a :func:`frames` state, stacked.

    Args:
        state: a state of ``frames()``, possibly inside gates.

    Returns:
        uint8 ``[T, *batch, 3, H, W]``; ``T`` is 0 when nothing is held.

    Example:
        >>> import funrec
        >>> funrec.video(funrec.frames().init()).shape
        torch.Size([0, 3, 0, 0])
    """
    state = _unwrap(state, FramesState, "video")
    if len(state.items):
        return stack_frames(tuple(state.items))
    layout = state.layout
    shape = (*layout.batch_shape, 3, layout.height, layout.width) if layout else (3, 0, 0)
    return torch.empty((0, *shape), dtype=torch.uint8)


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
    state = _unwrap(state, TensorDictsState, "trajectory")
    return torch.stack(tuple(state.items)) if len(state.items) else None


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
    state = _unwrap(state, EpisodeStatsState, "episodes")
    return tuple(state.episodes)


def drain(state: State) -> tuple[Any, State]:
    """Hands out what a state holds and returns the state emptied of it.

    The counters and the cached layout are kept, so a drained state goes on
    recording the same stream; only the held items leave. This is how the
    edges stream recordings to a writer without holding them.

    Args:
        state: any recorder state.

    Returns:
        ``(items, emptied_state)``. ``items`` is a tuple of frames (uint8
        ``[*batch, 3, H, W]``), TensorDicts or :class:`Episode`, oldest first;
        for a :class:`NamedState`, a dict of such tuples.

    Example:
        >>> import funrec
        >>> items, state = funrec.drain(funrec.frames().init())
        >>> items
        ()
    """
    if isinstance(state, NamedState):
        drained = [drain(s) for s in state.states]
        items = {name: d[0] for name, d in zip(state.names, drained, strict=True)}
        return items, NamedState(state.names, tuple(d[1] for d in drained))
    if isinstance(state, GateState):
        items, inner = drain(state.inner)
        return items, state._replace(inner=inner)
    if isinstance(state, EpisodeStatsState):
        return tuple(state.episodes), state._replace(episodes=Queue())
    if isinstance(state, FramesState | TensorDictsState):
        return tuple(state.items), state._replace(items=Queue())
    raise RecorderError(f"drain(): {type(state).__name__} is not a funrec recorder state.")


def _unwrap(state: State, kind: type, view: str) -> Any:
    while isinstance(state, GateState):
        state = state.inner
    if isinstance(state, NamedState):
        raise RecorderError(
            f"{view}(): got the state of named({', '.join(state.names)}); "
            f"pick one recorder's state, e.g. {view}(state[{state.names[0]!r}])."
        )
    if not isinstance(state, kind):
        raise RecorderError(
            f"{view}(): expected the state of a {kind.__name__.removesuffix('State').lower()}() "
            f"recorder, got {type(state).__name__}."
        )
    return state


def grid(frames: torch.Tensor) -> torch.Tensor:
    """Tiles a batch of frames into one frame, row by row, as TorchRL's VideoRecorder does.

    ``N`` frames make ``ceil(sqrt(N))`` columns and as many rows as needed; the
    empty tiles of the last row are black.

    Args:
        frames: ``[..., N, 3, H, W]``, e.g. a batched video ``[T, N, 3, H, W]``.

    Returns:
        ``[..., 3, rows * H, cols * W]``.

    Example:
        >>> import torch, funrec
        >>> funrec.grid(torch.zeros(16, 3, 40, 60, dtype=torch.uint8)).shape
        torch.Size([3, 160, 240])
    """
    *lead, n, c, h, w = frames.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = frames.new_zeros(*lead, rows * cols - n, c, h, w)
    tiles = torch.cat([frames, pad], dim=-4).reshape(*lead, rows, cols, c, h, w)
    tiles = tiles.movedim(-3, -5)  # [..., c, rows, cols, h, w]
    return tiles.transpose(-2, -3).reshape(*lead, c, rows * h, cols * w)


def stack_frames(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stacks frames ``[..., 3, H, W]`` into ``[T, ..., 3, H, W]``, in their memory order.

    Recorded frames keep their input's channel position in memory (an HWC frame
    is a channels-last view), so they are stacked channels-last: one straight
    copy, and writers read the result as HWC without another. A single frame
    comes back as a view.

    Args:
        frames: one or more frames of one shape, as ``drain`` hands them out.

    Returns:
        ``[T, ..., 3, H, W]``; equal, value for value, to ``torch.stack(frames)``.

    Example:
        >>> import torch, funrec
        >>> hwc = torch.zeros(4, 6, 3, dtype=torch.uint8)
        >>> funrec.stack_frames([hwc.movedim(-1, -3)] * 5).shape
        torch.Size([5, 3, 4, 6])
    """
    if len(frames) == 1:
        return frames[0][None]
    return torch.stack([f.movedim(-3, -1) for f in frames]).movedim(-1, -3)
