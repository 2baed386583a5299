"""funrec_torchrl.PixelRenderTransform on single, serial and parallel CartPole envs."""

from __future__ import annotations

import pickle

import pytest
import torch
from funrec_torchrl import PixelRenderTransform
from tensordict import NonTensorData
from torchrl.envs import EnvCreator, GymEnv, ParallelEnv, SerialEnv, check_env_specs


def make_cartpole():
    return GymEnv("CartPole-v1", render_mode="rgb_array")


def make_rendering_cartpole():  # inside ParallelEnv workers: test_torchrl_parallel.py
    return make_cartpole().append_transform(PixelRenderTransform())


def assert_cartpole_frames(pixels: torch.Tensor) -> None:
    """Every [400, 600, 3] frame is a CartPole picture: white background, a dark cart."""
    frames = pixels.reshape(-1, 400, 600, 3)
    assert pixels.dtype == torch.uint8
    for frame in frames:
        assert (frame == 255).float().mean() > 0.5  # background
        assert (frame.amax(-1) < 100).any()  # the cart


def test_single_env_renders_every_reset_and_step():
    env = make_rendering_cartpole()
    check_env_specs(env)
    td = env.rollout(4, break_when_any_done=False)
    assert td["pixels"].shape == (4, 400, 600, 3)
    assert td["next", "pixels"].shape == (4, 400, 600, 3)
    assert_cartpole_frames(td["next", "pixels"])
    # the frame after step t is the frame before step t+1
    assert torch.equal(td["next", "pixels"][:-1], td["pixels"][1:])


@pytest.mark.parametrize("batched", [SerialEnv, ParallelEnv])
def test_on_the_outer_batched_env_render_lists_are_stacked(batched):
    env = batched(3, EnvCreator(make_cartpole))
    env.start()
    env = env.append_transform(PixelRenderTransform())
    check_env_specs(env)
    assert env.observation_spec["pixels"].shape == (3, 400, 600, 3)
    td = env.rollout(3)
    assert td["next", "pixels"].shape == (3, 3, 400, 600, 3)
    assert_cartpole_frames(td["next", "pixels"])
    # three independent carts: the frames differ between workers
    assert not torch.equal(td["next", "pixels"][0], td["next", "pixels"][1])
    env.close()


def test_one_image_for_a_batch_is_stored_as_non_tensor():
    env = SerialEnv(2, make_cartpole)
    env.start()
    env = env.append_transform(PixelRenderTransform(preproc=lambda images: images[0]))
    td = env.reset()
    assert env.transform.as_non_tensor is True
    image = td.get("pixels")
    assert isinstance(image, NonTensorData)
    assert image.data.shape == (400, 600, 3)
    env.close()


def test_switch_turns_rendering_off_and_on():
    env = make_rendering_cartpole()
    env.transform.switch()
    assert env.reset().get("pixels", None) is None
    env.transform.switch("on")
    assert env.reset()["pixels"].shape == (400, 600, 3)


def test_a_parent_without_render_method_is_refused():
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        make_cartpole().append_transform(PixelRenderTransform(render_method="draw"))


def test_pickles_for_spawned_workers():
    transform = PixelRenderTransform(preproc=lambda x: x)
    copy = pickle.loads(pickle.dumps(transform))
    assert copy.out_keys == ["pixels"]
