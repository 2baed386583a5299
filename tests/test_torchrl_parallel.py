"""ParallelEnv faults: a dying worker or a bad frame ends the script with an error, never a hang.

Each scenario runs as its own script in a subprocess (spawned workers, real
CartPole). The subprocess timeout only guards the test run against a hang; the
assertions are on the exit status and the error text.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from funrec_torchrl import PixelRenderTransform, TensorDictRecorder, VideoRecorder
from test_torchrl_render import assert_cartpole_frames
from torchrl.envs import EnvCreator, ParallelEnv, check_env_specs

PRELUDE = """
import os, signal
from torchrl.envs import EnvCreator, GymEnv, ParallelEnv
from funrec_torchrl import PixelRenderTransform, VideoRecorder


class FailAfter:
    def __init__(self, n):
        self.n = n

    def __call__(self, image):
        self.n -= 1
        if self.n < 0:
            raise RuntimeError("render preproc failed inside the worker")
        return image


def make_env(preproc=None):
    env = GymEnv("CartPole-v1", render_mode="rgb_array")
    return env.append_transform(PixelRenderTransform(preproc=preproc))


def make_failing_env():
    return make_env(FailAfter(6))
"""

SCENARIOS = {
    "worker_raises": (
        """
        env = ParallelEnv(1, EnvCreator(make_failing_env))
        env.rollout(50, break_when_any_done=False)
        """,
        "worker 0 dead",
    ),
    "worker_killed": (
        """
        env = ParallelEnv(1, EnvCreator(make_env))
        env.rollout(2)
        os.kill(env._workers[0].pid, signal.SIGKILL)
        env.rollout(2)
        """,
        "worker 0 dead",
    ),
    "bad_key_on_outer_env": (
        """
        env = ParallelEnv(1, EnvCreator(make_env))
        env = env.append_transform(VideoRecorder(None, "x", in_keys=["observation"]))
        env.rollout(3)
        """,
        "frames('observation'): got shape (1, 4)",
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_script_fails_with_the_error_and_exits(scenario, tmp_path):
    body, expected = SCENARIOS[scenario]
    script = tmp_path / "scenario.py"
    main = textwrap.indent(textwrap.dedent(body), "    ")
    script.write_text(f'{PRELUDE}\n\nif __name__ == "__main__":\n{main}')
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-3000:]


def make_recording_env():
    from torchrl.envs import GymEnv

    env = GymEnv("CartPole-v1", render_mode="rgb_array")
    env = env.append_transform(PixelRenderTransform())
    env = env.append_transform(VideoRecorder(None, "worker", max_frames=100))
    return env.append_transform(TensorDictRecorder("unused", skip=2))


def test_spawned_workers_carry_the_transforms_and_specs_check():
    env = ParallelEnv(2, EnvCreator(make_recording_env), mp_start_method="spawn")
    check_env_specs(env)
    td = env.rollout(4, break_when_any_done=False)
    assert td["next", "pixels"].shape == (2, 4, 400, 600, 3)
    assert_cartpole_frames(td["next", "pixels"])  # each worker rendered its own env
    assert not torch.equal(td["next", "pixels"][0], td["next", "pixels"][1])
    env.close()
