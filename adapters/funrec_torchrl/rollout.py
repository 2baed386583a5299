"""Recording ``env.rollout``: a callback object, and a rollout that misses no step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tensordict import TensorDictBase
from torchrl.envs import EnvBase

import funrec


class RecorderCallback:
    """A ``callback`` for TorchRL's ``env.rollout`` that folds a funrec recorder.

    TorchRL calls ``callback(env, td)`` after every step but the last; each call
    is one ``state = recorder.step(state, td)``. What ``td`` holds depends on
    the rollout: with ``break_when_any_done=False`` it is the step's transition
    (root and ``"next"``), otherwise the state after the step (TorchRL's
    ``step_mdp``: no ``"next"``). Use :func:`rollout` to record every step.

    Args:
        recorder: the funrec recorder to run.
        state: the state to continue from; ``recorder.init()`` if None.

    Attributes:
        state: the recorder state after the calls so far.

    Example:
        >>> import funrec
        >>> from torchrl.envs import GymEnv
        >>> cb = RecorderCallback(funrec.episode_stats())
        >>> env = GymEnv("CartPole-v1")  # doctest: +SKIP
        >>> env.rollout(100, callback=cb, break_when_any_done=False)  # doctest: +SKIP
        >>> funrec.episodes(cb.state)  # doctest: +SKIP
    """

    def __init__(self, recorder: funrec.Recorder, state: Any = None) -> None:
        self.recorder = recorder
        self.state = recorder.init() if state is None else state

    def __call__(self, env: EnvBase, td: TensorDictBase) -> None:
        self.state = self.recorder.step(self.state, td)


def rollout(
    env: EnvBase,
    recorder: funrec.Recorder,
    max_steps: int,
    policy: Callable[[TensorDictBase], TensorDictBase] | None = None,
    *,
    state: Any = None,
    **rollout_kwargs: Any,
) -> tuple[TensorDictBase, Any]:
    """Runs ``env.rollout`` and folds ``recorder`` over every step of it.

    The recorder sees each transition of the returned rollout once, in order:
    ``state`` equals ``funrec.fold(recorder, rollout_td.unbind(time_dim))``.
    With ``break_when_any_done=False`` the steps are folded as they happen,
    through :class:`RecorderCallback`, and the last one, which TorchRL never
    hands to a callback, after the rollout; otherwise TorchRL's callback only
    sees post-step states, so the transitions are folded from the result.

    Args:
        env: the TorchRL env.
        recorder: the funrec recorder to run.
        max_steps: the most steps to take.
        policy: the policy; random actions if None.
        state: the state to continue from; ``recorder.init()`` if None.
        **rollout_kwargs: passed to ``env.rollout`` (not ``callback``).

    Returns:
        ``(rollout_td, state)``: what ``env.rollout`` returns, and the recorder state.

    Example:
        >>> import funrec
        >>> from torchrl.envs import GymEnv
        >>> td, state = rollout(GymEnv("CartPole-v1"), funrec.episode_stats(), 500,
        ...                     break_when_any_done=False)  # doctest: +SKIP
        >>> funrec.episodes(state)  # doctest: +SKIP
    """
    if "callback" in rollout_kwargs:
        raise TypeError(
            "funrec_torchrl.rollout(...) passes its own callback to env.rollout; record "
            "several things at once with funrec.named(...) instead of a second callback."
        )
    callback = RecorderCallback(recorder, state)
    time_dim = len(env.batch_size)
    nonstop = not rollout_kwargs.get("break_when_any_done", True) and not rollout_kwargs.get(
        "break_when_all_done", False
    )
    if nonstop:
        rollout_td = env.rollout(max_steps, policy, callback=callback, **rollout_kwargs)
        last = rollout_td.unbind(time_dim)[-1]
        return rollout_td, recorder.step(callback.state, last)
    rollout_td = env.rollout(max_steps, policy, **rollout_kwargs)
    return rollout_td, funrec.fold(recorder, rollout_td.unbind(time_dim), callback.state)
