"""A stateful model of a rollout, to find the sequences of events that break a recorder.

:class:`RecorderMachine` is a Hypothesis ``RuleBasedStateMachine``. Give it your
recorder in a subclass, and Hypothesis runs random sequences of rollout events
— steps, episodes ending in every sub-env or in some of them, reset
TensorDicts, drains, pickling the state and resuming — checking the laws of
:mod:`funrec.testing.laws` after each one, then shrinks a failing sequence to
the shortest it can find.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from tensordict import TensorDict, TensorDictBase

from funrec.errors import RecorderError
from funrec.layout import Layout
from funrec.recorder import Recorder
from funrec.testing import strategies as fst
from funrec.testing._values import describe_stream, difference, snapshot
from funrec.testing.laws import (
    _broken,
    _context,
    _drain,
    _Ledger,
    _pure_step,
    _roundtrip,
    _still_valid,
)

__all__ = ["RecorderMachine"]


class RecorderMachine(RuleBasedStateMachine):
    """Random rollouts with drains and pickling, checked against the laws at every event.

    Subclass it and set ``recorder``; its ``TestCase`` attribute is a
    ``unittest.TestCase`` that pytest collects. Set Hypothesis settings on it,
    e.g. ``TestCase.settings = hypothesis.settings(max_examples=50)``.

    The rules:

    - ``step``: an env step where no episode ends;
    - ``done``: a step that ends the episode of every sub-env;
    - ``partial_reset``: a step that ends the episodes of some sub-envs only
      (TorchRL then resets those alone); needs two sub-envs or more;
    - ``reset``: the TensorDict an env reset returns (no ``"next"``). A recorder
      may reject it, but then the state it was given must stay valid;
    - ``drain``: ``funrec.drain`` hands out what was recorded since the last
      drain, once;
    - ``pickle_and_resume``: the state is pickled and recording goes on from
      the unpickled copy.

    After every event the step was pure, the counts add up and never went
    down (where ``funrec.counts`` views the state), and the state equals a
    twin that saw the same steps and drains but was never pickled.

    Attributes:
        recorder: the recorder under test (set it in the subclass).
        layouts: the strategy of frame layouts; a layout is drawn per run and
            fixes the batch size. Override for other frames.

    Example:
        >>> import funrec
        >>> class EverySecondFrame(RecorderMachine):
        ...     recorder = funrec.every(2, funrec.frames())
        >>> TestEverySecondFrame = EverySecondFrame.TestCase  # collected by pytest
    """

    recorder: Recorder
    layouts: st.SearchStrategy[Layout] = fst.layouts(max_side=6)

    def __init__(self) -> None:
        super().__init__()
        if not isinstance(getattr(self, "recorder", None), Recorder):
            raise RecorderError(
                f"{type(self).__name__}.recorder is {getattr(self, 'recorder', None)!r}; set it "
                "to the recorder under test in your subclass, e.g. recorder = funrec.frames()."
            )

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.layout = data.draw(self.layouts, label="layout")
        self.state = self.recorder.init()
        self.twin = self.recorder.init()  # the same steps and drains, never pickled
        self.ledger = _Ledger(self.state)
        self.events: list[str] = []
        self.fed: list[TensorDictBase] = []

    @property
    def envs(self) -> int:
        """The number of sub-envs, from the drawn layout's batch shape."""
        return math.prod(self.layout.batch_shape)

    def step_tensordict(self, data: st.DataObject, done: torch.Tensor) -> TensorDictBase:
        """One env step's TensorDict: ``"pixels"``, ``("next", "reward")``, ``("next", "done")``.

        Override it to feed your recorder other keys.

        Args:
            data: draw the step's values from it.
            done: bool ``[*batch]``, which sub-envs end their episode at this step.

        Returns:
            A TensorDict of batch size ``layout.batch_shape``.
        """
        return data.draw(fst.steps(self.layout, done))

    def reset_tensordict(self, data: st.DataObject) -> TensorDictBase:
        """The TensorDict of an env reset: ``"pixels"`` and ``"done"`` (all False), no ``"next"``.

        Override it to feed your recorder other keys.
        """
        batch = self.layout.batch_shape
        done = torch.zeros(*batch, 1, dtype=torch.bool)
        pixels = data.draw(fst.images_for(self.layout))
        return TensorDict({"pixels": pixels, "done": done}, batch_size=batch)

    def _where(self) -> str:
        events = ", ".join(self.events) or "none"
        return f"After the events: {events}\nThe steps fed: " + describe_stream(self.fed)

    def _feed(self, event: str, td: TensorDictBase) -> None:
        self.events.append(event)
        self.fed.append(td)
        where = f"{event} (event {len(self.events)})"
        with _context(self._where):
            self.state = _pure_step(self.recorder, self.state, td, where)
            self.twin = self.recorder.step(self.twin, td)
            self.ledger.stepped(self.state, where)

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        self._feed(
            "step",
            self.step_tensordict(data, torch.zeros(self.layout.batch_shape, dtype=torch.bool)),
        )

    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        self._feed(
            "done",
            self.step_tensordict(data, torch.ones(self.layout.batch_shape, dtype=torch.bool)),
        )

    @precondition(lambda self: self.envs > 1)
    @rule(data=st.data())
    def partial_reset(self, data: st.DataObject) -> None:
        flags = st.lists(st.booleans(), min_size=self.envs, max_size=self.envs)
        mask = data.draw(flags.filter(lambda f: any(f) and not all(f)), label="sub-envs done")
        done = torch.tensor(mask).reshape(self.layout.batch_shape)
        self._feed(f"partial_reset {mask}", self.step_tensordict(data, done))

    @rule(data=st.data())
    def reset(self, data: st.DataObject) -> None:
        td = self.reset_tensordict(data)
        before = snapshot(self.state)
        try:
            self.recorder.step(self.state, td)
        except Exception as err:
            self.events.append(f"reset (rejected: {type(err).__name__})")
            failed = f"a step on a reset TensorDict raised {type(err).__name__}"
            with _context(self._where):
                _still_valid(self.state, before, failed, td)
        else:
            self._feed("reset", td)

    @rule()
    def drain(self) -> None:
        self.events.append("drain")
        with _context(self._where):
            self.state = self.ledger.drain(self.state, f"at event {len(self.events)}")
        twin = _drain(self.twin)
        if twin is not None:
            self.twin = twin[1]

    @rule()
    def pickle_and_resume(self) -> None:
        self.events.append("pickle_and_resume")
        with _context(self._where):
            self.state = _roundtrip(self.state, f"at event {len(self.events)}")

    @invariant()
    def same_as_twin(self) -> None:
        if found := difference(self.twin, self.state):
            law = "pickling" if "pickle_and_resume" in self.events else "determinism"
            with _context(self._where):
                raise _broken(
                    law,
                    "the state differs from a twin that saw the same steps and drains but was "
                    "never pickled (first: the twin)",
                    found,
                )
