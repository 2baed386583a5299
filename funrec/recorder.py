"""The recorder abstraction: a pair of pure functions, stages that wrap them, and a fold."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from tensordict import TensorDictBase

from funrec.errors import MissingKeyError, RecorderError

State = Any
Key = str | tuple[str, ...]


class Recorder(NamedTuple):
    """A recorder: two pure functions, in the manner of optax's GradientTransformation.

    Attributes:
        init: ``init() -> state``, the state before anything was seen. The
            built-in recorders also take an example TensorDict,
            ``init(example)``, and then fix every shape of the state from it
            (optax's ``init(params)``); the state's structure never changes after.
        step: ``step(state, td) -> state``, the state after one TensorDict more.
            It never mutates ``state`` nor ``td``; on bad input it raises and the
            state it was given stays valid.

    Example:
        >>> import funrec
        >>> rec = funrec.frames("pixels")
        >>> state = rec.init()
        >>> # for td in rollout: state = rec.step(state, td)
    """

    init: Callable[..., State]
    step: Callable[[State, TensorDictBase], State]


class Stage:
    """A recorder transformer, such as ``every(2)``: what :func:`funrec.pipeline` chains.

    Calling a stage on a recorder returns the wrapped recorder.

    Example:
        >>> import funrec
        >>> stage = funrec.every(2)
        >>> stage
        every(2)
        >>> rec = stage(funrec.frames())
    """

    __slots__ = ("_build", "_name")

    def __init__(self, name: str, build: Callable[[Recorder], Recorder]) -> None:
        self._name = name
        self._build = build

    def __call__(self, recorder: Recorder) -> Recorder:
        return self._build(check_recorder(recorder, self._name))

    def __repr__(self) -> str:
        return self._name


class Counts(NamedTuple):
    """What happened to every item that entered a recorder.

    ``seen == recorded + skipped + dropped`` always holds.

    Attributes:
        seen: items that entered.
        recorded: items kept (still held, or already drained).
        skipped: items left out by a rule the user chose (``skip``, ``every``, ``when``...).
        dropped: items lost to the overflow policy the user chose.
    """

    seen: Any = 0
    recorded: Any = 0
    skipped: Any = 0
    dropped: Any = 0


def check_recorder(recorder: Any, who: str) -> Recorder:
    """``recorder`` if it is a :class:`Recorder`, else a :class:`RecorderError` saying why."""
    if isinstance(recorder, Recorder):
        return recorder
    hint = (
        " Wrap a pair of functions as funrec.Recorder(init, step)."
        if isinstance(recorder, tuple)
        else " A stage goes before the recorder: pipeline(stage, recorder)."
        if isinstance(recorder, Stage)
        else ""
    )
    raise RecorderError(
        f"{who}: expected a funrec.Recorder, got {type(recorder).__name__} {recorder!r}.{hint}"
    )


def init_state(recorder: Recorder, example: TensorDictBase | None = None) -> State:
    """``recorder.init()``, or ``recorder.init(example)`` when an example is given."""
    return recorder.init() if example is None else recorder.init(example)


def read_key(td: TensorDictBase, key: Key, who: str) -> Any:
    """``td[key]``, or a :class:`MissingKeyError` that lists the keys there are."""
    value = td.get(key, None)
    if value is None:
        available = sorted(str(k) for k in td.keys(True, True))
        raise MissingKeyError(
            f"{who}: key {key!r} is not in the TensorDict (batch size "
            f"{tuple(td.batch_size)}, keys: {available}). Pass the key that holds the data."
        )
    return value


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
