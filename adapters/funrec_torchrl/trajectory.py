"""``TensorDictRecorder``: TorchRL's TensorDict-saving transform over ``funrec.tensordicts``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tensordict import LazyStackedTensorDict, TensorDictBase
from torchrl.envs.transforms import Transform
from torchrl.record import TensorDictRecorder as TorchRLTensorDictRecorder

import funrec
from funrec import RecorderError
from funrec.writers import TrajectoryWriter, save
from funrec_torchrl._env import RESET_MARK, detached_copy, is_step, mark_reset


class TensorDictRecorder(TorchRLTensorDictRecorder):
    """Records the TensorDicts of resets and steps; ``dump()`` saves them stacked.

    A drop-in for (and a subclass of) TorchRL's transform whose ``dump()`` works (TorchRL 0.14's
    raises ``AttributeError``) and writes where ``out_file_base`` says:
    ``<out_file_base>[_<suffix>]_tensordict.t``, a ``torch.save``d TensorDict of
    batch size ``[T, *batch]`` (a lazy stack when resets, which have no reward,
    are kept) that ``torch.load(path, weights_only=False)`` reads back.
    Recording is a ``funrec.tensordicts`` fold; ``skip_reset`` leaves out the
    TensorDicts of resets (TorchRL drops the first one kept, whatever it was).

    With ``store=True``, each step's TensorDict is written as it arrives to a
    funrec trajectory store (:class:`funrec.writers.TrajectoryWriter`, memory
    does not grow with the rollout) at ``<out_file_base>.partial_trajectory``;
    ``dump()`` closes it and renames it ``<out_file_base>[_<suffix>]_trajectory``,
    which ``funrec.writers.load(path)`` reads back as one TensorDict ``[T, *batch]``
    (plus an ``"episode"`` id per step, from the ``"done"`` key).

    Args:
        out_file_base: the path prefix of the saved files.
        skip_reset: leave out the TensorDicts that resets produce.
        skip: keep one TensorDict in ``skip`` (the 1st, the ``skip+1``-th, ...),
            counting after ``skip_reset``.
        in_keys: the keys to keep; all of them by default.
        store: stream to a funrec trajectory store instead of holding the
            TensorDicts for a ``torch.save`` at ``dump()`` (steps only:
            ``skip_reset`` must stay True, a reset has no reward).

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
        *,
        store: bool = False,
    ) -> None:
        if store and not skip_reset:
            raise RecorderError(
                "TensorDictRecorder(store=True) streams the TensorDicts of steps to a trajectory "
                "store, whose steps all have the same keys; a reset's has no reward. Keep "
                "skip_reset=True, or store=False to save resets too in a .t file."
            )
        Transform.__init__(self, in_keys=list(in_keys or []))  # TorchRL's keeps a list
        self.out_file_base = out_file_base
        self.skip_reset = skip_reset
        self.skip = skip
        self.store = store
        self.iter = 0
        self._recorder = self._make_recorder()
        self._state = self._recorder.init()
        self._writer: TrajectoryWriter | None = None

    def _make_recorder(self) -> funrec.Recorder:
        keys = list(self.in_keys) or None
        rec = funrec.tensordicts(keys, skip=self.skip)
        if keys is None:  # the reset mark is the adapter's, not the env's
            rec = funrec.map_td(lambda td: td.exclude(RESET_MARK), rec)
        return funrec.when(is_step, rec) if self.skip_reset else rec

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        # Straight into __dict__: nn.Module.__setattr__ costs microseconds per step.
        self.__dict__["_state"] = self._recorder.step(self._state, next_tensordict)
        if self.store:
            self._stream()
        return next_tensordict

    def _stream(self) -> None:
        """Appends what is held to the open store (opened on the first TensorDict)."""
        items, emptied = funrec.drain(self._state)
        if not items:
            return
        if self._writer is None:
            self._writer = TrajectoryWriter(
                f"{self.out_file_base}.partial_trajectory", done_key="done"
            )
        for td in items:
            self._writer.append(td)
        self._state = emptied

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
        With ``store=True``, finishes the store instead and names it
        ``<out_file_base>[_<suffix>]_trajectory`` (never over an existing one).

        Args:
            suffix: appended to ``out_file_base`` as ``_<suffix>``.
        """
        base = self.out_file_base if suffix is None else f"{self.out_file_base}_{suffix}"
        if self.store:
            self._finish_store(Path(f"{base}_trajectory"))
            self.iter += 1
            return
        items, emptied = funrec.drain(self._state)
        if items:
            path = Path(f"{base}_tensordict.t")
            # A reset TensorDict has no reward: keep steps and resets as a lazy stack then.
            save(LazyStackedTensorDict.maybe_dense_stack(items), path)
            self._state = emptied
        self.iter += 1

    def _finish_store(self, final: Path) -> None:
        writer = self._writer
        if writer is None:
            return
        if final.exists():
            raise FileExistsError(
                f"TensorDictRecorder.dump(): {str(final)!r} exists; a store is never written over "
                f"another. Move it away (or dump with another suffix); the steps stay in "
                f"{str(writer.path)!r} until then."
            )
        writer.close()
        writer.path.rename(final)
        self._writer = None

    def clone(self) -> TensorDictRecorder:
        """The same recorder, holding nothing and writing no store (TorchRL's parent rebuild)."""
        clone = detached_copy(self)
        clone.__dict__.update(store=False, _writer=None, _state=self._recorder.init())
        return clone

    def __getstate__(self) -> dict[str, Any]:
        if self._writer is not None:
            raise RecorderError(
                f"TensorDictRecorder: cannot pickle while writing {str(self._writer.path)!r}; "
                "call dump() first (or pickle the transform before the rollout)."
            )
        state = super().__getstate__()
        state["_recorder"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._recorder = self._make_recorder()
