"""Combinators: recorders built from recorders.

Gates (``every``, ``when``, ``on_episodes``, ``on_steps``) decide which
TensorDicts reach the recorder they wrap and count the others as skipped; their
decisions are the rules of :mod:`funrec.rules`. Stages (``select``, ``map_td``)
change the TensorDict on its way in. ``named`` fans one stream out to several
recorders, and ``pipeline`` chains stages left to right. Called without a
recorder, each gate and stage returns a :class:`Stage` for ``pipeline``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, overload

from tensordict import TensorDictBase

from funrec import rules
from funrec._queue import same_value
from funrec.errors import RecorderError
from funrec.recorder import Key, Recorder, Stage, State, check_recorder, init_state, read_key


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
    seen: Any = 0
    skipped: Any = 0
    episode: Any = 0
    window: Any = 0


class NamedState(Mapping[str, State]):
    """State of :func:`named`: an immutable mapping from each name to its recorder's state.

    The names are structure, not data: two states are equal when they have the
    same names, in the same order, with equal states.

    Example:
        >>> import funrec
        >>> state = funrec.named(video=funrec.frames(), stats=funrec.episode_stats()).init()
        >>> list(state), "video" in state, len(state)
        (['video', 'stats'], True, 2)
    """

    __slots__ = ("_states",)

    def __init__(self, states: Mapping[str, State] | Sequence[tuple[str, State]] = ()) -> None:
        self._states = dict(states)

    @classmethod
    def _of(cls, states: dict[str, State]) -> NamedState:
        """A state around ``states`` itself, not copied: a new dict that nothing else holds."""
        new = object.__new__(cls)
        new._states = states
        return new

    def __getitem__(self, name: str) -> State:
        try:
            return self._states[name]
        except (KeyError, TypeError):
            raise KeyError(
                f"no recorder named {name!r} in named({', '.join(self._states)}); "
                f"use one of {list(self._states)}."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NamedState):
            return NotImplemented
        return list(self) == list(other) and all(
            same_value(a, b) for a, b in zip(self.values(), other.values(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def replace(self, **states: State) -> NamedState:
        """A copy with the states of some names replaced.

        Example:
            >>> import funrec
            >>> state = funrec.named(a=funrec.frames()).init()
            >>> state.replace(a=funrec.frames().init()) == state
            True
        """
        for name in states:
            self[name]
        return NamedState({**self._states, **states})

    def __reduce__(self) -> tuple[Any, ...]:
        return NamedState, (tuple(self._states.items()),)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={state!r}" for name, state in self._states.items())
        return f"NamedState({inner})"


def _stage_or_recorder(
    name: str, build: Callable[[Recorder], Recorder], recorder: Recorder | None
) -> Stage | Recorder:
    stage = Stage(name, build)
    return stage if recorder is None else stage(recorder)


def _gate(recorder: Recorder, keep: Callable[[GateState, TensorDictBase], tuple[Any, GateState]]):
    def init(example: TensorDictBase | None = None) -> GateState:
        return GateState(init_state(recorder, example))

    def step(state: GateState, td: TensorDictBase) -> GateState:
        passes, state = keep(state, td)
        if not passes:
            return state._replace(seen=state.seen + 1, skipped=state.skipped + 1)
        return state._replace(inner=recorder.step(state.inner, td), seen=state.seen + 1)

    return Recorder(init, step)


@overload
def every(n: int) -> Stage: ...
@overload
def every(n: int, recorder: Recorder) -> Recorder: ...
def every(n: int, recorder: Recorder | None = None) -> Stage | Recorder:
    """Passes one TensorDict in ``n`` (the first, the ``n+1``-th, ...) to ``recorder``.

    The same rule as a recorder's ``skip=n`` (:func:`funrec.rules.periodic`).

    Args:
        n: the period, an integer >= 1.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.

    Returns:
        A :class:`Recorder` whose state is a :class:`GateState` (or a :class:`Stage`).

    Example:
        >>> import funrec
        >>> rec = funrec.every(4, funrec.frames())
        >>> same = funrec.pipeline(funrec.every(4), funrec.frames())
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise RecorderError(f"every(n): n must be an integer >= 1, got {n!r}.")
    return _stage_or_recorder(
        f"every({n})",
        lambda r: _gate(r, lambda s, td: (rules.periodic(s.seen, n), s)),
        recorder,
    )


@overload
def when(predicate: Callable[[TensorDictBase], Any]) -> Stage: ...
@overload
def when(predicate: Callable[[TensorDictBase], Any], recorder: Recorder) -> Recorder: ...
def when(
    predicate: Callable[[TensorDictBase], Any], recorder: Recorder | None = None
) -> Stage | Recorder:
    """Passes the TensorDicts for which ``predicate(td)`` is true to ``recorder``.

    Args:
        predicate: a pure function of the incoming TensorDict.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.

    Returns:
        A :class:`Recorder` whose state is a :class:`GateState` (or a :class:`Stage`).

    Example:
        >>> import funrec
        >>> rec = funrec.when(lambda td: bool(td["next", "reward"] > 0), funrec.tensordicts())
    """
    if not callable(predicate):
        raise RecorderError(f"when(predicate): predicate must be callable, got {predicate!r}.")
    name = f"when({getattr(predicate, '__name__', repr(predicate))})"
    return _stage_or_recorder(
        name, lambda r: _gate(r, lambda s, td: (bool(predicate(td)), s)), recorder
    )


@overload
def on_episodes(trigger: Callable[[int], Any], *, done_key: Key | None = None) -> Stage: ...
@overload
def on_episodes(
    trigger: Callable[[int], Any], recorder: Recorder, *, done_key: Key | None = None
) -> Recorder: ...
def on_episodes(
    trigger: Callable[[int], Any],
    recorder: Recorder | None = None,
    *,
    done_key: Key | None = None,
) -> Stage | Recorder:
    """Passes every step of the episodes whose index satisfies ``trigger``.

    Episodes are numbered from 0; a step that ends the episode
    (:func:`funrec.rules.done_flags`) is its last. Like gymnasium's
    ``RecordVideo(episode_trigger=...)``. The stream must be unbatched: record a
    batched env per sub-env instead.

    Args:
        trigger: ``trigger(episode_index) -> bool``, e.g. :func:`funrec.capped_cubic`.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.
        done_key: the done key to read; None reads every done key.

    Returns:
        A :class:`Recorder` whose state is a :class:`GateState` (or a :class:`Stage`).

    Example:
        >>> import funrec
        >>> rec = funrec.on_episodes(lambda ep: ep % 10 == 0, funrec.frames())
    """
    who = f"on_episodes(done_key={done_key!r})"

    def keep(state: GateState, td: TensorDictBase) -> tuple[Any, GateState]:
        done = rules.done_flags(td, done_key)
        if done.numel() != 1:
            raise RecorderError(
                f"{who}: the done flags have shape {tuple(done.shape)}; episode triggers need "
                f"an unbatched stream (one done value). Record each sub-env on its own."
            )
        passes = bool(trigger(state.episode))
        return passes, state._replace(episode=state.episode + int(done.item()))

    name = f"on_episodes({getattr(trigger, '__name__', repr(trigger))})"
    return _stage_or_recorder(name, lambda r: _gate(r, keep), recorder)


@overload
def on_steps(trigger: Callable[[int], Any], *, length: int) -> Stage: ...
@overload
def on_steps(trigger: Callable[[int], Any], recorder: Recorder, *, length: int) -> Recorder: ...
def on_steps(
    trigger: Callable[[int], Any], recorder: Recorder | None = None, *, length: int
) -> Stage | Recorder:
    """Opens a window of ``length`` steps at every step index where ``trigger`` is true.

    Steps are numbered from 0. A trigger inside an open window does not extend
    it (:func:`funrec.rules.window`). Like gymnasium's
    ``RecordVideo(step_trigger=..., video_length=...)``.

    Args:
        trigger: ``trigger(step_index) -> bool``.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.
        length: the number of steps each window passes, >= 1.

    Returns:
        A :class:`Recorder` whose state is a :class:`GateState` (or a :class:`Stage`).

    Example:
        >>> import funrec
        >>> rec = funrec.on_steps(lambda t: t % 1000 == 0, funrec.frames(), length=100)
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise RecorderError(
            f"on_steps(length=...): length must be an integer >= 1, got {length!r}."
        )

    def keep(state: GateState, td: TensorDictBase) -> tuple[Any, GateState]:
        passes, left = rules.window(state.window, bool(trigger(state.seen)), length)
        return passes, state._replace(window=left)

    name = f"on_steps({getattr(trigger, '__name__', repr(trigger))}, length={length})"
    return _stage_or_recorder(name, lambda r: _gate(r, keep), recorder)


@overload
def select(keys: Sequence[Key]) -> Stage: ...
@overload
def select(keys: Sequence[Key], recorder: Recorder) -> Recorder: ...
def select(keys: Sequence[Key], recorder: Recorder | None = None) -> Stage | Recorder:
    """Passes only ``keys`` of each TensorDict to ``recorder``.

    Args:
        keys: the keys to keep (nested keys as tuples).
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.

    Returns:
        A :class:`Recorder` with the state of ``recorder`` (or a :class:`Stage`).

    Example:
        >>> import funrec
        >>> rec = funrec.select(["pixels", ("next", "reward")], funrec.tensordicts())
    """
    if isinstance(keys, str):
        raise RecorderError(f"select(keys): pass a list of keys, e.g. [{keys!r}], not a string.")
    keys = list(keys)
    who = f"select({keys!r})"

    def build(r: Recorder) -> Recorder:
        def step(state: State, td: TensorDictBase) -> State:
            for key in keys:
                read_key(td, key, who)
            return r.step(state, td.select(*keys))

        return Recorder(r.init, step)

    return _stage_or_recorder(who, build, recorder)


@overload
def map_td(fn: Callable[[TensorDictBase], TensorDictBase]) -> Stage: ...
@overload
def map_td(fn: Callable[[TensorDictBase], TensorDictBase], recorder: Recorder) -> Recorder: ...
def map_td(
    fn: Callable[[TensorDictBase], TensorDictBase], recorder: Recorder | None = None
) -> Stage | Recorder:
    """Passes ``fn(td)`` to ``recorder``: a pure TensorDict -> TensorDict stage.

    Args:
        fn: a function that returns a new TensorDict and does not mutate its input.
        recorder: the recorder to feed; omit it to get a stage for ``pipeline``.

    Returns:
        A :class:`Recorder` with the state of ``recorder`` (or a :class:`Stage`).

    Example:
        >>> import funrec
        >>> crop = funrec.map_td(lambda td: td.copy().set("pixels", td["pixels"][8:-8, 8:-8]))
    """
    if not callable(fn):
        raise RecorderError(f"map_td(fn): fn must be callable, got {fn!r}.")
    return _stage_or_recorder(
        f"map_td({getattr(fn, '__name__', repr(fn))})",
        lambda r: Recorder(r.init, lambda state, td: r.step(state, fn(td))),
        recorder,
    )


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
        >>> funrec.counts(rec.init()["video"])
        Counts(seen=0, recorded=0, skipped=0, dropped=0)
    """
    if not recorders:
        raise RecorderError("named() needs at least one recorder, e.g. named(video=frames()).")
    for name, recorder in recorders.items():
        check_recorder(recorder, f"named({name}=...)")
    pairs = tuple(recorders.items())

    def init(example: TensorDictBase | None = None) -> NamedState:
        return NamedState([(name, init_state(r, example)) for name, r in pairs])

    def step(state: NamedState, td: TensorDictBase) -> NamedState:
        # A NamedState's own dict, read directly: its __getitem__ is a Python call per name.
        states = state._states if type(state) is NamedState else state
        stepped = {}
        for name, r in pairs:
            try:
                inner = states[name]
            except KeyError:
                inner = state[name]  # NamedState's KeyError names the recorders there are
            stepped[name] = r.step(inner, td)
        return NamedState._of(stepped)

    return Recorder(init, step)


def pipeline(*stages: Stage | Callable[[Recorder], Recorder] | Recorder) -> Recorder:
    """Chains stages left to right, ending with a recorder.

    ``pipeline(a, b, r)`` is ``a(b(r))``: a TensorDict goes through ``a``, then
    ``b``, then into ``r``.

    Args:
        *stages: stages (combinators called without their recorder, or any
            function from a recorder to a recorder), then a recorder.

    Returns:
        A :class:`Recorder`.

    Example:
        >>> import funrec
        >>> rec = funrec.pipeline(funrec.select(["pixels"]), funrec.every(2), funrec.frames())
    """
    if not stages:
        raise RecorderError("pipeline() needs a recorder, e.g. pipeline(every(2), frames()).")
    *transformers, recorder = stages
    if not isinstance(recorder, Recorder):
        raise RecorderError(
            "pipeline(...) must end with a recorder, e.g. pipeline(every(2), frames()); got "
            f"{type(recorder).__name__} {recorder!r} last."
        )
    for i, stage in enumerate(transformers, start=1):
        if isinstance(stage, Recorder):
            raise RecorderError(
                f"pipeline(...): argument {i} is a recorder, but only the last argument may "
                "be one; to record several things from one stream, use "
                "funrec.named(a=..., b=...)."
            )
        if not callable(stage):
            raise RecorderError(
                f"pipeline(...): argument {i} ({stage!r}) is not a stage; pass stages such "
                "as every(2) or select([...]), then a recorder."
            )
    for stage in reversed(transformers):
        recorder = check_recorder(stage(recorder), f"pipeline(...): stage {stage!r} returned")
    return recorder
