"""Combinators: recorders built from recorders.

Gates (``every``, ``when``, ``on_episodes``, ``on_steps``) decide which
TensorDicts reach the recorder they wrap and count the others as skipped.
Stages (``select``, ``map_td``) change the TensorDict on its way in. ``named``
fans one stream out to several recorders, and ``pipeline`` chains stages left
to right. Called without a recorder, each combinator returns a stage for
``pipeline``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from tensordict import TensorDictBase

from funrec.errors import RecorderError
from funrec.recorder import Recorder, Stage, State
from funrec.recorders import Key, read_key


class GateState(NamedTuple):
    """State of a gate: the wrapped state and the gate's own counters.

    Attributes:
        inner: the state of the wrapped recorder.
        seen: TensorDicts that reached the gate.
        skipped: TensorDicts the gate kept from the wrapped recorder.
        episode: episodes finished so far (``on_episodes``).
        window: steps left in the current recording window (``on_steps``).
    """

    inner: State
    seen: int = 0
    skipped: int = 0
    episode: int = 0
    window: int = 0


class NamedState(NamedTuple):
    """State of :func:`named`: one state per name, read as ``state[name]``."""

    names: tuple[str, ...]
    states: tuple[State, ...]

    def __getitem__(self, name: Any) -> State:  # type: ignore[override]
        if isinstance(name, str):
            return self.states[self.names.index(name)]
        return tuple.__getitem__(self, name)

    def items(self) -> tuple[tuple[str, State], ...]:
        """``(name, state)`` pairs, in the order the recorders were given."""
        return tuple(zip(self.names, self.states, strict=True))


def _stage(combinator: Callable[..., Recorder]) -> Callable[..., Any]:
    """Lets ``combinator(*args)`` without its recorder return a stage."""

    @functools.wraps(combinator)
    def wrapper(*args: Any, recorder: Recorder | None = None, **kwargs: Any) -> Any:
        if recorder is None and args and isinstance(args[-1], Recorder):
            *args, recorder = args
        if recorder is None:
            return lambda r: combinator(*args, recorder=r, **kwargs)
        return combinator(*args, recorder=recorder, **kwargs)

    return wrapper


def _gate(recorder: Recorder, keep: Callable[[GateState, TensorDictBase], tuple[bool, GateState]]):
    def init() -> GateState:
        return GateState(recorder.init())

    def step(state: GateState, td: TensorDictBase) -> GateState:
        passes, state = keep(state, td)
        if not passes:
            return state._replace(seen=state.seen + 1, skipped=state.skipped + 1)
        return state._replace(inner=recorder.step(state.inner, td), seen=state.seen + 1)

    return Recorder(init, step)


@_stage
def every(n: int, *, recorder: Recorder) -> Recorder:
    """Passes one TensorDict in ``n`` (the first, the ``n+1``-th, ...) to ``recorder``.

    Args:
        n: the period, an integer >= 1.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.

    Returns:
        A :class:`Recorder` whose state is a :class:`GateState`.

    Example:
        >>> import funrec
        >>> rec = funrec.every(4, funrec.frames())
        >>> same = funrec.pipeline(funrec.every(4), funrec.frames())
    """
    if not isinstance(n, int) or n < 1:
        raise RecorderError(f"every(n): n must be an integer >= 1, got {n!r}.")
    return _gate(recorder, lambda s, td: (s.seen % n == 0, s))


@_stage
def when(predicate: Callable[[TensorDictBase], bool], *, recorder: Recorder) -> Recorder:
    """Passes the TensorDicts for which ``predicate(td)`` is true to ``recorder``.

    Args:
        predicate: a pure function of the incoming TensorDict.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.

    Returns:
        A :class:`Recorder` whose state is a :class:`GateState`.

    Example:
        >>> import funrec
        >>> rec = funrec.when(lambda td: bool(td["next", "reward"] > 0), funrec.tensordicts())
    """
    return _gate(recorder, lambda s, td: (bool(predicate(td)), s))


@_stage
def on_episodes(
    trigger: Callable[[int], bool],
    *,
    recorder: Recorder,
    done_key: Key = ("next", "done"),
) -> Recorder:
    """Passes every step of the episodes whose index satisfies ``trigger``.

    Episodes are numbered from 0; a step whose done flag is set is the last of
    its episode. Like gymnasium's ``RecordVideo(episode_trigger=...)``. The
    stream must be unbatched: record a batched env per sub-env instead.

    Args:
        trigger: ``trigger(episode_index) -> bool``, e.g. :func:`capped_cubic`.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.
        done_key: the key of the done flag.

    Returns:
        A :class:`Recorder` whose state is a :class:`GateState`.

    Example:
        >>> import funrec
        >>> rec = funrec.on_episodes(lambda ep: ep % 10 == 0, funrec.frames())
    """
    who = f"on_episodes(done_key={done_key!r})"

    def keep(state: GateState, td: TensorDictBase) -> tuple[bool, GateState]:
        done = read_key(td, done_key, who)
        if done.numel() != 1:
            raise RecorderError(
                f"{who}: the done flag has shape {tuple(done.shape)}; episode triggers need "
                f"an unbatched stream (one done value). Record each sub-env on its own."
            )
        passes = bool(trigger(state.episode))
        return passes, state._replace(episode=state.episode + int(bool(done.item())))

    return _gate(recorder, keep)


@_stage
def on_steps(trigger: Callable[[int], bool], *, recorder: Recorder, length: int) -> Recorder:
    """Opens a window of ``length`` steps at every step index where ``trigger`` is true.

    Steps are numbered from 0. A trigger inside an open window does not extend
    it. Like gymnasium's ``RecordVideo(step_trigger=..., video_length=...)``.

    Args:
        trigger: ``trigger(step_index) -> bool``.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.
        length: the number of steps each window passes, >= 1.

    Returns:
        A :class:`Recorder` whose state is a :class:`GateState`.

    Example:
        >>> import funrec
        >>> rec = funrec.on_steps(lambda t: t % 1000 == 0, funrec.frames(), length=100)
    """
    if not isinstance(length, int) or length < 1:
        raise RecorderError(f"on_steps(length=...): length must be an integer >= 1, got {length}.")

    def keep(state: GateState, td: TensorDictBase) -> tuple[bool, GateState]:
        window = state.window or (length if trigger(state.seen) else 0)
        return window > 0, state._replace(window=max(window - 1, 0))

    return _gate(recorder, keep)


def capped_cubic(episode: int) -> bool:
    """True at episodes 0, 1, 8, 27, ..., 729, then at every 1000th episode.

    The default schedule of gymnasium's ``RecordVideo``, for :func:`on_episodes`.

    Args:
        episode: the episode index, from 0.

    Returns:
        Whether to record that episode.

    Example:
        >>> [e for e in range(30) if capped_cubic(e)]
        [0, 1, 8, 27]
    """
    if episode < 1000:
        root = round(episode ** (1 / 3))
        return root**3 == episode
    return episode % 1000 == 0


@_stage
def select(keys: Sequence[Key], *, recorder: Recorder) -> Recorder:
    """Passes only ``keys`` of each TensorDict to ``recorder``.

    Args:
        keys: the keys to keep (nested keys as tuples).
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.

    Returns:
        A :class:`Recorder` with the state of ``recorder``.

    Example:
        >>> import funrec
        >>> rec = funrec.select(["pixels", ("next", "reward")], funrec.tensordicts())
    """
    keys = list(keys)
    who = f"select({keys!r})"

    def step(state: State, td: TensorDictBase) -> State:
        for key in keys:
            read_key(td, key, who)
        return recorder.step(state, td.select(*keys))

    return Recorder(recorder.init, step)


@_stage
def map_td(fn: Callable[[TensorDictBase], TensorDictBase], *, recorder: Recorder) -> Recorder:
    """Passes ``fn(td)`` to ``recorder``: a pure TensorDict -> TensorDict stage.

    Args:
        fn: a function that returns a new TensorDict and does not mutate its input.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.

    Returns:
        A :class:`Recorder` with the state of ``recorder``.

    Example:
        >>> import funrec
        >>> crop = funrec.map_td(lambda td: td.copy().set("pixels", td["pixels"][8:-8, 8:-8]))
    """
    return Recorder(recorder.init, lambda state, td: recorder.step(state, fn(td)))


def named(**recorders: Recorder) -> Recorder:
    """Feeds every TensorDict to each of ``recorders``; the state maps names to states.

    Like optax's ``named_chain``. A step either succeeds for every recorder or
    raises with the state unchanged.

    Args:
        **recorders: the recorders, by name.

    Returns:
        A :class:`Recorder` whose state is a :class:`NamedState`.

    Example:
        >>> import funrec
        >>> rec = funrec.named(video=funrec.frames(), stats=funrec.episode_stats())
        >>> rec.init()["video"].counts
        Counts(seen=0, recorded=0, skipped=0, dropped=0)
    """
    if not recorders:
        raise RecorderError("named() needs at least one recorder, e.g. named(video=frames()).")
    names = tuple(recorders)

    def init() -> NamedState:
        return NamedState(names, tuple(r.init() for r in recorders.values()))

    def step(state: NamedState, td: TensorDictBase) -> NamedState:
        return NamedState(
            names,
            tuple(r.step(s, td) for r, s in zip(recorders.values(), state.states, strict=True)),
        )

    return Recorder(init, step)


def pipeline(*stages: Stage | Recorder) -> Recorder:
    """Chains stages left to right, ending with a recorder.

    ``pipeline(a, b, r)`` is ``a(b(r))``: a TensorDict goes through ``a``, then
    ``b``, then into ``r``.

    Args:
        *stages: stages (combinators called without their recorder), then a recorder.

    Returns:
        A :class:`Recorder`.

    Example:
        >>> import funrec
        >>> rec = funrec.pipeline(funrec.select(["pixels"]), funrec.every(2), funrec.frames())
    """
    if not stages or not isinstance(stages[-1], Recorder):
        raise RecorderError(
            "pipeline(...) must end with a recorder, e.g. pipeline(every(2), frames()); "
            f"got {stages[-1] if stages else 'nothing'!r} last."
        )
    *transformers, recorder = stages
    for stage in reversed(transformers):
        recorder = stage(recorder)
    return recorder
