"""The recorder abstraction: a pair of pure functions, and a fold over a rollout."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from tensordict import TensorDictBase

State = Any


class Recorder(NamedTuple):
    """A recorder: two pure functions, in the manner of optax's GradientTransformation.

    Attributes:
        init: ``init() -> state``, the state before anything was seen.
        step: ``step(state, td) -> state``, the state after one TensorDict more.
            It never mutates ``state`` nor ``td``; on bad input it raises and the
            state it was given stays valid.

    Example:
        >>> import funrec
        >>> rec = funrec.frames("pixels")
        >>> state = rec.init()
        >>> # for td in rollout: state = rec.step(state, td)
    """

    init: Callable[[], State]
    step: Callable[[State, TensorDictBase], State]


Stage = Callable[[Recorder], Recorder]
"""A recorder transformer, such as ``every(2)``: what ``pipeline`` chains."""


class Counts(NamedTuple):
    """What happened to every item that entered a recorder.

    ``seen == recorded + skipped + dropped`` always holds.

    Attributes:
        seen: items that entered.
        recorded: items kept (still held, or already drained).
        skipped: items left out by a rule the user chose (``skip``, ``every``, ``when``...).
        dropped: items lost to the overflow policy the user chose.
    """

    seen: int = 0
    recorded: int = 0
    skipped: int = 0
    dropped: int = 0


def fold(
    recorder: Recorder, tensordicts: Iterable[TensorDictBase], state: State | None = None
) -> State:
    """Steps ``recorder`` through every TensorDict of ``tensordicts``.

    Args:
        recorder: the recorder to run.
        tensordicts: the TensorDicts of a rollout, one per step (a rollout
            ``TensorDict`` of batch size ``[T]`` iterates over its steps; use
            ``rollout.unbind(-1)`` for a batched ``[B, T]`` rollout).
        state: the state to continue from; ``recorder.init()`` if None.

    Returns:
        The state after the last TensorDict.

    Example:
        >>> import torch, funrec
        >>> from tensordict import TensorDict
        >>> frame = torch.zeros(8, 8, 3, dtype=torch.uint8)
        >>> steps = [TensorDict({"pixels": frame}) for _ in range(4)]
        >>> funrec.video(funrec.fold(funrec.frames(), steps)).shape
        torch.Size([4, 3, 8, 8])
    """
    if state is None:
        state = recorder.init()
    for td in tensordicts:
        state = recorder.step(state, td)
    return state
