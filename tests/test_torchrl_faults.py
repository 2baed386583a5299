"""TorchRL-side faults with a clear error instead of a deep one."""

import pytest
from funrec_torchrl import PixelRenderTransform
from torchrl.envs import GymEnv, SerialEnv


def test_a_render_transform_on_a_batched_env_not_started_says_to_start_it():
    env = SerialEnv(2, lambda: GymEnv("CartPole-v1", render_mode="rgb_array"))
    # TorchRL's own transform (and funrec's, before) recursed 1000 frames deep here.
    with pytest.raises(RuntimeError, match=r"SerialEnv is not started.*env\.start\(\)"):
        env.append_transform(PixelRenderTransform())
    env.start()
    env = env.append_transform(PixelRenderTransform())
    assert env.rollout(2)["pixels"].shape == (2, 2, 400, 600, 3)
    env.close()
