"""``TensorDictRecorder``: TorchRL's TensorDict-saving transform over ``funrec.tensordicts``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tensordict import LazyStackedTensorDict, TensorDictBase
from torchrl.envs.transforms import Transform

import funrec
from funrec.writers import save
from funrec_torchrl._env import RESET_MARK, is_step, mark_reset


class TensorDictRecorder(Transform):
    """Records the TensorDicts of resets and steps; ``dump()`` saves them stacked.

    A drop-in for TorchRL's transform whose ``dump()`` works (TorchRL 0.14's
    raises ``AttributeError``) and writes where ``out_file_base`` says:
    ``<out_file_base>[_<suffix>]_tensordict.t``, a ``torch.save``d TensorDict of
    batch size ``[T, *batch]`` (a lazy stack when resets, which have no reward,
    are kept) that ``torch.load(path, weights_only=False)`` reads back.
    Recording is a ``funrec.tensordicts`` fold; ``skip_reset`` leaves out the
    TensorDicts of resets (TorchRL drops the first one kept, whatever it was).

    Args:
        out_file_base: the path prefix of the saved files.
        skip_reset: leave out the TensorDicts that resets produce.
        skip: keep one TensorDict in ``skip`` (the 1st, the ``skip+1``-th, ...),
            counting after ``skip_reset``.
        in_keys: the keys to keep; all of them by default.

    Example:
        >>> from torchrl.envs import GymEnv
        >>> from funrec_torchrl import TensorDictRecorder
        >>> env = GymEnv("CartPole-v1").append_transform(
        ...     TensorDictRecorder("/tmp/cartpole", skip=1))  # doctest: +SKIP
        >>> env.rollout(5)  # doctest: +SKIP
        >>> env.transform.dump()  # /tmp/cartpole_tensordict.t, batch size [5]  # doctest: +SKIP
    """

    def __init__(
        self,
        out_file_base: str,
        skip_reset: bool = True,
        skip: int = 4,
        in_keys: Sequence[str] | None = None,
    ) -> None:
        super().__init__(in_keys=list(in_keys or []))
        self.out_file_base = out_file_base
        self.skip_reset = skip_reset
        self.skip = skip
        self.iter = 0
        self._recorder = self._make_recorder()
        self._state = self._recorder.init()

    def _make_recorder(self) -> funrec.Recorder:
        keys = list(self.in_keys) or None
        rec = funrec.tensordicts(keys, skip=self.skip)
        if keys is None:  # the reset mark is the adapter's, not the env's
            rec = funrec.map_td(lambda td: td.exclude(RESET_MARK), rec)
        return funrec.when(is_step, rec) if self.skip_reset else rec

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        # Straight into __dict__: nn.Module.__setattr__ costs microseconds per step.
        self.__dict__["_state"] = self._recorder.step(self._state, next_tensordict)
        return next_tensordict

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        self.__dict__["_state"] = self._recorder.step(
            self._state, mark_reset(tensordict, tensordict_reset)
        )
        return tensordict_reset

    @property
    def state(self) -> Any:
        """The funrec recorder state: ``funrec.trajectory(state)``, ``funrec.counts(state)``."""
        return self._state

    def dump(self, suffix: str | None = None) -> None:
        """Saves the TensorDicts held to ``<out_file_base>[_<suffix>]_tensordict.t`` and drops them.

        The file appears whole or not at all (saved under a unique temporary name beside
        it, then renamed). A no-op when nothing is held. If saving fails, a
        ``WriterError`` says why and the TensorDicts stay held: ``dump()`` again retries.

        Args:
            suffix: appended to ``out_file_base`` as ``_<suffix>``.
        """
        items, emptied = funrec.drain(self._state)
        if items:
            base = self.out_file_base if suffix is None else f"{self.out_file_base}_{suffix}"
            path = Path(f"{base}_tensordict.t")
            # A reset TensorDict has no reward: keep steps and resets as a lazy stack then.
            save(LazyStackedTensorDict.maybe_dense_stack(items), path)
            self._state = emptied
        self.iter += 1

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_recorder"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._recorder = self._make_recorder()
