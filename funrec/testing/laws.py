"""The laws every recorder obeys, as checks you run on your own recorder.

``check_recorder(recorder)`` runs Hypothesis over generated rollouts and checks
each law in turn; when one breaks, Hypothesis shrinks the rollout and the
:class:`LawError` says which law broke, on what stream, and what differs.
Each law is also an ``assert_*`` function of one stream, for your own tests.

The laws:

- **determinism**: the same stream gives equal states.
- **purity**: ``step`` never changes the state it is given nor the incoming
  TensorDict; a step that raises leaves the state it was given valid (unchanged,
  viewable, and it still resumes to the same result).
- **fold_splits**: ``fold(a + b) == fold(b, fold(a))``, and continuing one
  state twice gives equal states.
- **accounting** (where ``funrec.counts`` or ``funrec.drain`` can view the
  state): ``seen == recorded + skipped + dropped`` after every step, counters
  never go down, and ``drain`` hands out what was recorded since the last
  drain, once, in order, without changing the counts.
- **pickling**: a state pickled mid-stream comes back equal and resumes to the
  same result.
- **merge** (where ``funrec.merge`` takes the state): ``init()`` is an
  identity, ``merge`` is associative, counts add, and ``merge(a, b)`` holds
  ``a``'s items then ``b``'s.

Example:
    >>> import funrec
    >>> from funrec.testing import check_recorder
    >>> check_recorder(funrec.every(2, funrec.frames()))  # doctest: +SKIP
    ('determinism', 'purity', 'fold_splits', 'accounting', 'pickling', 'merge')
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import hypothesis
import torch
from hypothesis import given
from hypothesis import strategies as st
from tensordict import TensorDict, TensorDictBase

import funrec
from funrec.errors import RecorderError
from funrec.recorder import Counts, Recorder, State
from funrec.testing import strategies as fst
from funrec.testing._values import (
    describe,
    describe_stream,
    difference,
    plural,
    snapshot,
    unpicklable_part,
)

Stream = Sequence[TensorDictBase]

LAWS = ("determinism", "purity", "fold_splits", "accounting", "pickling", "merge")


class LawError(AssertionError):
    """A recorder broke a law: the message says which, what differs, and on what stream."""


def _broken(law: str, what: str, detail: str | None = None) -> LawError:
    return LawError(f"The {law} law is broken: {what}." + (f"\n  {detail}" if detail else ""))


@contextlib.contextmanager
def _context(where: Callable[[], str]) -> Iterator[None]:
    """Adds ``where()`` (the stream, in words) to a :class:`LawError` raised inside."""
    try:
        yield
    except LawError as err:
        raise LawError(f"{err}\n{where()}") from err.__cause__


def _on(stream: Stream) -> contextlib.AbstractContextManager[None]:
    return _context(lambda: "On " + describe_stream(stream))


def _step(recorder: Recorder, state: State, td: TensorDictBase, where: str) -> State:
    try:
        return recorder.step(state, td)
    except Exception as err:
        raise LawError(
            f"Could not check the laws: {where} raised {type(err).__name__}: {err}\n"
            "  The laws are checked on streams the recorder accepts: give it ones that fit."
        ) from err


def _fold(recorder: Recorder, steps: Stream, state: State = None, start: int = 0) -> State:
    state = recorder.init() if state is None else state
    for i, td in enumerate(steps, start):
        state = _step(recorder, state, td, f"step {i}")
    return state


def _after(at: int) -> str:
    return f"after {plural(at, 'step')}"


def _pure_step(recorder: Recorder, state: State, td: TensorDictBase, where: str) -> State:
    """``recorder.step(state, td)``, checking that it changed neither argument."""
    before, td_before = snapshot(state), snapshot(td)
    new = _step(recorder, state, td, where)
    if found := difference(before, state):
        raise _broken("purity", f"{where} changed the state it was given", found)
    if found := difference(td_before, td, "td"):
        raise _broken("purity", f"{where} changed the incoming TensorDict", found)
    return new


def _still_valid(state: State, before: State, failed: str, bad: TensorDictBase) -> None:
    """Checks that ``state``, given to a step that raised, is unchanged and viewable."""
    if found := difference(before, state):
        raise _broken("purity", f"{failed} and changed the state it was given", found)
    for name, view in (("counts", funrec.counts), ("drain", funrec.drain)):
        try:
            view(state)
        except RecorderError:
            pass
        except Exception as err:
            raise _broken(
                "purity",
                f"{failed}; then funrec.{name}(state) raised {type(err).__name__}: {err}",
                f"the bad TensorDict: {describe(bad)}",
            ) from err


def _roundtrip(state: State, where: str) -> State:
    """``pickle.loads(pickle.dumps(state))``, checking that it comes back equal."""
    try:
        blob = pickle.dumps(state)
    except Exception as err:
        part = unpicklable_part(state)
        raise _broken(
            "pickling",
            f"the state {where} cannot be pickled ({type(err).__name__}: {err})",
            f"{part} cannot be pickled" if part else None,
        ) from None
    back = pickle.loads(blob)
    if found := difference(state, back):
        raise _broken("pickling", f"the state {where}, pickled, came back different", found)
    return back


def assert_pure(recorder: Recorder, stream: Stream) -> None:
    """Checks that no step changes the state it is given nor the incoming TensorDict.

    Each state is compared, value for value, with a deep snapshot taken before
    the step, right after the step and again at the end of the stream (a later
    step may change an earlier state through a part they share).

    Args:
        recorder: the recorder to check.
        stream: the TensorDicts to step through, in order.

    Raises:
        LawError: naming the step, the part of the state or TensorDict it
            changed, and its value before and after.
    """
    with _on(stream):
        state, kept = recorder.init(), []
        for i, td in enumerate(stream):
            kept.append((i, state, snapshot(state)))
            state = _pure_step(recorder, state, td, f"step {i}")
        for i, earlier, before in kept:
            if found := difference(before, earlier):
                raise _broken("purity", f"a later step changed the state given to step {i}", found)


def assert_recovers(recorder: Recorder, stream: Stream, bad: TensorDictBase, at: int) -> None:
    """Checks that a step that raises leaves the state it was given valid.

    After the first ``at`` steps of ``stream``, the recorder steps on ``bad``.
    If that raises, the state it was given must be unchanged, ``funrec.counts``
    and ``funrec.drain`` must still view it (where they view this recorder's
    states), and stepping it on through the rest of the stream must give the
    fold of the whole stream. If the recorder accepts ``bad``, there is nothing
    to check.

    Args:
        recorder: the recorder to check.
        stream: TensorDicts the recorder accepts.
        bad: a TensorDict it may reject, e.g. with a key missing.
        at: how many steps of ``stream`` come before ``bad``.

    Raises:
        LawError: naming the error ``bad`` caused and what it broke.
    """
    with _on(stream):
        state = _fold(recorder, stream[:at])
        before = snapshot(state)
        try:
            recorder.step(state, bad)
        except Exception as err:
            failed = f"{_after(at)}, a step on a bad TensorDict raised {type(err).__name__}"
            _still_valid(state, before, failed, bad)
            resumed = _fold(recorder, stream[at:], state, start=at)
            if found := difference(_fold(recorder, stream), resumed):
                raise _broken(
                    "purity",
                    f"{failed}; the state it was given, stepped through the rest of the stream, "
                    f"no longer gives the fold of the whole stream",
                    f"{found}\n  the bad TensorDict: {describe(bad)}",
                ) from None


def assert_deterministic(recorder: Recorder, stream: Stream) -> None:
    """Checks that folding the same stream twice (from two ``init()``) gives equal states.

    The second fold steps through copies of the TensorDicts, so a recorder that
    tells them apart by identity rather than value breaks the law too.

    Args:
        recorder: the recorder to check.
        stream: the TensorDicts to fold.

    Raises:
        LawError: naming the first part where the two states differ.
    """
    with _on(stream):
        first = _fold(recorder, stream)
        second = _fold(recorder, [snapshot(td) for td in stream])
        if found := difference(first, second):
            raise _broken(
                "determinism", "folding the same stream twice gave different states", found
            )


def assert_fold_splits(recorder: Recorder, stream: Stream, at: int) -> None:
    """Checks ``fold(a + b) == fold(b, fold(a))`` with ``a = stream[:at]``.

    ``fold(a)`` is continued twice, after other folds have run, so a recorder
    that keeps anything outside its state breaks the law.

    Args:
        recorder: the recorder to check.
        stream: the TensorDicts to fold.
        at: where to split ``stream``.

    Raises:
        LawError: naming the first part where the states differ.
    """
    with _on(stream):
        whole = _fold(recorder, stream)
        head = _fold(recorder, stream[:at])
        resumed = _fold(recorder, stream[at:], head, start=at)
        again = _fold(recorder, stream[at:], head, start=at)
        if found := difference(whole, resumed):
            raise _broken(
                "fold_splits",
                f"fold(b, fold(a)) differs from fold(a + b), a being {plural(at, 'step')}",
                found,
            )
        if found := difference(resumed, again):
            raise _broken(
                "fold_splits",
                f"continuing the same state ({_after(at)}) twice gave different states",
                found,
            )


def _flat(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """The leaves of a view's answer, which is a Mapping (one entry per name) for ``named``."""
    if isinstance(value, Mapping):
        for name, inner in value.items():
            yield from _flat(inner, f"{path}[{name!r}]")
    else:
        yield path, value


def _counts(state: State) -> dict[str, Counts] | None:
    """``funrec.counts(state)`` by path, or None where it cannot view the state."""
    try:
        return dict(_flat(funrec.counts(state)))
    except RecorderError:
        return None


def _drain(state: State) -> tuple[dict[str, tuple], State] | None:
    """``funrec.drain(state)`` with its items by path, or None where it cannot view the state."""
    try:
        items, emptied = funrec.drain(state)
    except RecorderError:
        return None
    return {path: tuple(got) for path, got in _flat(items)}, emptied


class _Ledger:
    """The accounting of one recording, step by step and drain by drain."""

    def __init__(self, state: State) -> None:
        self.counts = _counts(state)
        self.recorded_at_drain = {path: c.recorded for path, c in (self.counts or {}).items()}
        self.drained: dict[str, list[Any]] = {}

    def stepped(self, state: State, where: str) -> None:
        """Checks the counters after ``where``."""
        now = _counts(state)
        for path, c in (now or {}).items():
            if c.seen != c.recorded + c.skipped + c.dropped:
                raise _broken(
                    "accounting",
                    f"after {where}, counts{path} is {c}, and seen {c.seen} != recorded "
                    f"{c.recorded} + skipped {c.skipped} + dropped {c.dropped}",
                )
            old = (self.counts or {}).get(path)
            for field in Counts._fields if old is not None else ():
                if getattr(c, field) < getattr(old, field):
                    raise _broken(
                        "accounting",
                        f"{where} took counts{path}.{field} down from {getattr(old, field)} to "
                        f"{getattr(c, field)}",
                    )
        self.counts = now

    def drain(self, state: State, where: str) -> State:
        """Drains ``state``, checks what came out, and returns the emptied state."""
        found = _drain(state)
        if found is None:
            return state
        items, emptied = found
        if found_diff := _by_path(self.counts, _counts(emptied), "counts"):
            raise _broken("accounting", f"the drain {where} changed the counts", found_diff)
        for path, got in items.items():
            if self.counts is not None and path in self.counts:
                now, last = self.counts[path].recorded, self.recorded_at_drain.get(path, 0)
                if len(got) != now - last:
                    raise _broken(
                        "accounting",
                        f"the drain {where} handed out {plural(len(got), 'item')}{_at(path)}, "
                        f"but {now - last} {'was' if now - last == 1 else 'were'} recorded since "
                        f"the last drain (counts{path}.recorded went from {last} to {now})",
                    )
                self.recorded_at_drain[path] = now
            self.drained.setdefault(path, []).extend(got)
        again = _drain(emptied)
        more = {path: len(got) for path, got in (again[0] if again else {}).items() if got}
        if more:
            raise _broken(
                "accounting",
                f"a second drain right after the drain {where} handed out more: "
                + ", ".join(f"{plural(n, 'item')}{_at(path)}" for path, n in more.items()),
            )
        return emptied


def _by_path(a: dict[str, Any] | None, b: dict[str, Any] | None, name: str) -> str | None:
    """:func:`difference` of two answers of a view, by path (``counts['video']``)."""
    if a is None or b is None or a.keys() != b.keys():
        return difference(a, b, name)
    return next((d for p in a if (d := difference(a[p], b[p], name + p))), None)


def _at(path: str) -> str:
    return f" from {path}" if path else ""


def _drops(counts: dict[str, Counts] | None) -> bool:
    return counts is None or any(c.dropped for c in counts.values())


def assert_accounting(recorder: Recorder, stream: Stream, drains: Collection[int] = ()) -> None:
    """Checks the counters after every step, and what each drain hands out.

    After every step, every ``funrec.counts`` of the state has ``seen ==
    recorded + skipped + dropped`` and no counter went down. After the steps in
    ``drains`` and at the end, ``funrec.drain`` must hand out as many items as
    were recorded since the last drain, leave the counts as they were, and a
    second drain must hand out nothing. When nothing was dropped, the items of
    all drains, in order, are those of one drain at the end of the stream.
    Parts that ``funrec.counts`` or ``funrec.drain`` cannot view are not checked.

    Args:
        recorder: the recorder to check.
        stream: the TensorDicts to step through.
        drains: indices of the steps after which to drain.

    Raises:
        LawError: naming the step or drain and the counters or items that are wrong.
    """
    with _context(lambda: f"Drains after steps {sorted(drains)}, on " + describe_stream(stream)):
        state = recorder.init()
        ledger = _Ledger(state)
        for i, td in enumerate(stream):
            state = _step(recorder, state, td, f"step {i}")
            ledger.stepped(state, f"step {i}")
            if i in drains:
                state = ledger.drain(state, f"after step {i}")
        ledger.drain(state, "at the end")
        whole = _fold(recorder, stream)
        once = _drain(whole)
        if once is None or _drops(ledger.counts) or _drops(_counts(whole)):
            return
        drained = {path: tuple(got) for path, got in ledger.drained.items()}
        if found := _by_path(once[0], drained, "items"):
            raise _broken(
                "accounting",
                f"draining after steps {sorted(drains)} handed out other items than one drain "
                "at the end (first: one drain, second: the drains in order)",
                found,
            )


def assert_picklable(recorder: Recorder, stream: Stream, at: int) -> None:
    """Checks that a state pickled after ``at`` steps comes back equal and resumes the same.

    Args:
        recorder: the recorder to check.
        stream: the TensorDicts to fold.
        at: how many steps come before pickling.

    Raises:
        LawError: naming the part of the state pickle cannot write, or where the
            unpickled or resumed state differs.
    """
    with _on(stream):
        back = _roundtrip(_fold(recorder, stream[:at]), _after(at))
        resumed = _fold(recorder, stream[at:], back, start=at)
        if found := difference(_fold(recorder, stream), resumed):
            raise _broken(
                "pickling",
                f"a state pickled {_after(at)} and resumed gives another result than the fold "
                "without pickling",
                found,
            )


def _merge(a: State, b: State, what: str) -> State:
    try:
        return funrec.merge(a, b)
    except RecorderError as err:
        raise LawError(
            f"Could not check the merge law: {what} raised RecorderError: {err}"
        ) from err


def assert_merge_laws(recorder: Recorder, a: Stream, b: Stream, c: Stream) -> None:
    """Checks ``funrec.merge`` on the folds of three streams (e.g. one per worker).

    ``init()`` is a left and right identity of each fold. Where merging two
    folds is refused because both hold items of a stream that is never
    interleaved (frames, steps), the folds are drained first, as the edges
    drain each where it was recorded. Then ``merge`` is associative, the counts
    of ``merge(x, y)`` are the sums of theirs, and it holds the items of ``x``
    then those of ``y``.

    Args:
        recorder: the recorder to check.
        a: the first stream, folded on its own.
        b: the second.
        c: the third.

    Raises:
        LawError: naming the law and the first part where the states differ.
    """
    shards = {"a": a, "b": b, "c": c}
    with _context(lambda: "\n".join(f"{n}: " + describe_stream(s) for n, s in shards.items())):
        folds = [_fold(recorder, shard) for shard in shards.values()]
        for name, state in zip(shards, folds, strict=True):
            for merged, side in (
                (_merge(recorder.init(), state, f"merge(init(), fold({name}))"), "left"),
                (_merge(state, recorder.init(), f"merge(fold({name}), init())"), "right"),
            ):
                if found := difference(state, merged):
                    raise _broken(
                        "merge", f"init() is not a {side} identity of fold({name})", found
                    )
        try:
            for p, q in itertools.combinations(folds, 2):
                funrec.merge(p, q)
        except RecorderError:  # streams never interleaved: the edges drain them where recorded
            folds = [drained[1] if (drained := _drain(s)) else s for s in folds]
        x, y, z = folds
        left = _merge(_merge(x, y, "merge(a, b)"), z, "merge(merge(a, b), c)")
        right = _merge(x, _merge(y, z, "merge(b, c)"), "merge(a, merge(b, c))")
        if found := difference(left, right, "merge(merge(a, b), c)"):
            raise _broken("merge", "merge(merge(a, b), c) != merge(a, merge(b, c))", found)
        both = _merge(x, y, "merge(a, b)")
        got, parts = _counts(both), (_counts(x), _counts(y))
        if got is not None and parts[0] is not None and parts[1] is not None:
            want = {
                path: Counts(*(i + j for i, j in zip(counts, parts[1][path], strict=True)))
                for path, counts in parts[0].items()
            }
            if found := _by_path(want, got, "counts"):
                raise _broken(
                    "merge", "the counts of merge(a, b) are not the sums of theirs", found
                )
        held, held_x, held_y = _drain(both), _drain(x), _drain(y)
        if held is not None and held_x is not None and held_y is not None:
            want_items = {p: held_x[0][p] + held_y[0].get(p, ()) for p in held_x[0]}
            if found := _by_path(want_items, held[0], "items"):
                raise _broken(
                    "merge", "merge(a, b) does not hold the items of a, then those of b", found
                )


def _bad_steps(td: TensorDictBase | None) -> st.SearchStrategy[TensorDictBase]:
    """TensorDicts a recorder may reject: every key missing, one missing, one reshaped."""
    if td is None:
        return st.just(TensorDict({}))
    keys = sorted(td.keys(True, True), key=str)
    variants = [TensorDict({}, batch_size=td.batch_size)]
    variants += [td.exclude(key) for key in keys]
    for key in keys:
        value = td.get(key)
        if isinstance(value, torch.Tensor):
            wider = value.unsqueeze(-1).expand(*value.shape, 2).clone()
            variants.append(td.clone().set(key, wider))
    return st.sampled_from(variants)


def _indices(stream: Stream) -> st.SearchStrategy[int]:
    """Positions between the steps of ``stream``: 0 (before the first) to ``len(stream)``."""
    return st.integers(0, len(stream))


def _purity(recorder: Recorder, stream: Stream, data: st.DataObject) -> None:
    assert_pure(recorder, stream)
    at = data.draw(_indices(stream), label="bad step after")
    bad = data.draw(_bad_steps(stream[min(at, len(stream) - 1)] if stream else None), label="bad")
    assert_recovers(recorder, stream, bad, at)


def _shards(recorder: Recorder, stream: Stream, data: st.DataObject) -> None:
    i, j = sorted(data.draw(st.tuples(_indices(stream), _indices(stream)), label="shard cuts"))
    assert_merge_laws(recorder, stream[:i], stream[i:j], stream[j:])


_CHECKS: dict[str, Callable[[Recorder, Stream, st.DataObject], None]] = {
    "purity": _purity,
    "determinism": lambda rec, stream, data: assert_deterministic(rec, stream),
    "fold_splits": lambda rec, stream, data: assert_fold_splits(
        rec, stream, data.draw(_indices(stream), label="split at")
    ),
    "accounting": lambda rec, stream, data: assert_accounting(
        rec, stream, data.draw(st.sets(st.integers(0, max(len(stream) - 1, 0))), label="drains")
    ),
    "pickling": lambda rec, stream, data: assert_picklable(
        rec, stream, data.draw(_indices(stream), label="pickle after")
    ),
    "merge": _shards,
}


def _applies(law: str, recorder: Recorder) -> bool:
    if law == "accounting":
        state = recorder.init()
        return _counts(state) is not None or _drain(state) is not None
    if law == "merge":
        try:
            funrec.merge(recorder.init(), recorder.init())
        except RecorderError:
            return False
    return True


def _law_test(law: str, recorder: Recorder) -> Callable[[Stream, st.DataObject], None]:
    def test(stream: Stream, data: st.DataObject) -> None:
        _CHECKS[law](recorder, stream, data)

    test.__name__ = test.__qualname__ = f"{law}_law"  # Hypothesis keys its database by name
    return test


def check_recorder(
    recorder: Recorder,
    rollouts: st.SearchStrategy[list[TensorDictBase]] | None = None,
    *,
    laws: Iterable[str] | None = None,
    settings: hypothesis.settings | None = None,
) -> tuple[str, ...]:
    """Checks that ``recorder`` obeys funrec's laws on rollouts drawn by Hypothesis.

    Each law runs as its own Hypothesis test; the first that breaks raises a
    :class:`LawError` for the smallest rollout Hypothesis found, saying which
    law broke, what differs, and the stream, step by step.

    Args:
        recorder: the recorder to check, e.g. your ``Recorder(init, step)`` or a
            pipeline of built-ins.
        rollouts: a strategy of lists of TensorDicts the recorder accepts; by
            default ``rollouts(layouts(max_side=6), max_steps=10)`` of
            :mod:`funrec.testing.strategies`: up to 10 steps with ``"pixels"``
            of any layout, ``("next", "reward")`` and ``("next", "done")``.
        laws: the names of the laws to check (see :data:`LAWS`); all by default.
        settings: Hypothesis settings for every law, e.g.
            ``hypothesis.settings(max_examples=50)``; by default the loaded
            profile's, without a deadline. Each law reports one failure.

    Returns:
        The names of the laws that were checked: accounting only where
        ``funrec.counts`` or ``funrec.drain`` view the recorder's states, merge
        only where ``funrec.merge`` exists and takes them.

    Raises:
        LawError: the first law that broke, on the smallest failing stream.

    Example:
        >>> import funrec, hypothesis
        >>> from funrec.testing import check_recorder
        >>> check_recorder(funrec.frames(), settings=hypothesis.settings(max_examples=5))
        ('determinism', 'purity', 'fold_splits', 'accounting', 'pickling', 'merge')
    """
    chosen = LAWS if laws is None else tuple(laws)
    unknown = [law for law in chosen if law not in LAWS]
    if unknown:
        raise RecorderError(
            f"check_recorder(laws=...): unknown law(s) {unknown}; the laws: {LAWS}."
        )
    strategy = fst.rollouts(fst.layouts(max_side=6), max_steps=10) if rollouts is None else rollouts
    base = hypothesis.settings(deadline=None) if settings is None else settings
    settings = hypothesis.settings(base, report_multiple_bugs=False)  # one failure, one message
    checked = tuple(law for law in chosen if _applies(law, recorder))
    for law in checked:
        settings(given(stream=strategy, data=st.data())(_law_test(law, recorder)))()
    return checked
