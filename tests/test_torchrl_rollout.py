"""RecorderCallback and funrec_torchrl.rollout: the recorder sees every step of a rollout once."""

from __future__ import annotations

import pytest
from funrec_torchrl import RecorderCallback, rollout
from test_torchrl_envs import StampEnv, stamp_envs
from torchrl.envs import GymEnv

import funrec


def recorder() -> funrec.Recorder:
    return funrec.named(
        steps=funrec.tensordicts([("next", "pixels"), ("next", "reward")]),
        stats=funrec.episode_stats(),
    )


def test_torchrls_callback_misses_the_last_step():
    callback = RecorderCallback(funrec.tensordicts())
    StampEnv().rollout(6, callback=callback, break_when_any_done=False)
    assert funrec.counts(callback.state).seen == 5


@pytest.mark.parametrize("nonstop", [True, False])
def test_rollout_folds_every_transition_once(nonstop):
    env = StampEnv(episode_len=4)
    td, state = rollout(env, recorder(), 6, break_when_any_done=not nonstop)
    steps = 6 if nonstop else 4
    assert td.batch_size == (steps,)
    assert state == funrec.fold(recorder(), td.unbind(0))
    assert funrec.trajectory(state["steps"])["next", "pixels"].equal(td["next", "pixels"])
    assert funrec.episodes(state["stats"])[0] == funrec.Episode(0, 4.0, 4)


def test_rollout_over_a_batched_env_unbinds_the_time_dim():
    env = stamp_envs(2, 3)
    td, state = rollout(env, recorder(), 5, break_when_any_done=False)
    assert td.batch_size == (2, 5)
    assert state == funrec.fold(recorder(), td.unbind(1))
    ends = [(e.env, e.length) for e in funrec.episodes(state["stats"])]
    assert ends == [(0, 2), (1, 3), (0, 2)]
    env.close()


def test_rollout_continues_a_state_and_takes_a_policy():
    env = GymEnv("CartPole-v1")
    rec = funrec.episode_stats()
    _, state = rollout(env, rec, 5, break_when_any_done=False)
    policy = lambda td: td.set("action", env.action_spec.rand())  # noqa: E731
    td, state = rollout(env, rec, 5, policy, state=state)
    steps = sum(e.length for e in funrec.episodes(state)) + state.running_length[0]
    assert steps == 5 + td.batch_size[0]


def test_rollout_refuses_a_second_callback():
    with pytest.raises(TypeError, match="named"):
        rollout(StampEnv(), recorder(), 2, callback=lambda env, td: None)
