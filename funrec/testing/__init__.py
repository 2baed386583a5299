"""Testing helpers for recorders: strategies, law checks and a stateful rollout model.

- ``funrec.testing.strategies``: Hypothesis strategies for frames, layouts and rollouts.
- :func:`check_recorder` and the ``assert_*`` laws: what every recorder obeys.
- :class:`RecorderMachine`: random sequences of steps, episode ends, resets,
  drains and pickling, checked against the laws.

This package needs ``hypothesis`` (the ``dev`` extra); ``import funrec`` never loads it.
"""

from funrec.testing.laws import (
    LAWS,
    LawError,
    assert_accounting,
    assert_deterministic,
    assert_fold_splits,
    assert_merge_laws,
    assert_picklable,
    assert_pure,
    assert_recovers,
    check_recorder,
)
from funrec.testing.stateful import RecorderMachine

__all__ = [
    "LAWS",
    "LawError",
    "RecorderMachine",
    "assert_accounting",
    "assert_deterministic",
    "assert_fold_splits",
    "assert_merge_laws",
    "assert_picklable",
    "assert_pure",
    "assert_recovers",
    "check_recorder",
]
