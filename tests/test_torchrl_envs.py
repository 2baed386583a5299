"""StampEnv: a tiny TorchRL env whose frames carry their own number, and its sanity tests.

Every frame an env instance produces (on reset or step) is stamped with a
counter that grows by one per frame: red = low byte, green = high byte, blue =
the env's id. A recorder that sees each frame exactly once, in order, holds the
counters 0, 1, 2, ... of each env. The other test_torchrl_* modules import it.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, SerialEnv, check_env_specs

HEIGHT, WIDTH = 6, 8


def stamp(counter: int, env_id: int) -> torch.Tensor:
    """The HWC uint8 frame number ``counter`` of env ``env_id``."""
    frame = torch.empty(HEIGHT, WIDTH, 3, dtype=torch.uint8)
    frame[..., 0] = counter % 256
    frame[..., 1] = counter // 256
    frame[..., 2] = env_id
    return frame


def counter_of(frame: torch.Tensor) -> int:
    """The counter stamped into a ``[3, H, W]`` frame (top-left pixel)."""
    return int(frame[0, 0, 0]) + 256 * int(frame[1, 0, 0])


def env_of(frame: torch.Tensor) -> int:
    """The env id stamped into a ``[3, H, W]`` frame."""
    return int(frame[2, 0, 0])


class StampEnv(EnvBase):
    """Frames ``"pixels"`` (and their negative ``"pixels2"``) stamped with a frame counter.

    Args:
        env_id: written into the blue channel.
        episode_len: steps per episode; the last one is done.
    """

    def __init__(self, env_id: int = 0, episode_len: int = 1000) -> None:
        super().__init__(batch_size=())
        self.env_id = env_id
        self.episode_len = episode_len
        self.counter = 0
        self.t = 0
        frame = Unbounded(shape=(HEIGHT, WIDTH, 3), dtype=torch.uint8)
        self.observation_spec = Composite(pixels=frame, pixels2=frame.clone())
        self.action_spec = Categorical(2, shape=())
        self.reward_spec = Unbounded(shape=(1,))
        self.full_done_spec = Composite(
            done=Binary(1, shape=(1,), dtype=torch.bool),
            terminated=Binary(1, shape=(1,), dtype=torch.bool),
            truncated=Binary(1, shape=(1,), dtype=torch.bool),
        )

    def _frame(self) -> TensorDict:
        frame = stamp(self.counter, self.env_id)
        self.counter += 1
        return TensorDict({"pixels": frame, "pixels2": 255 - frame})

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        self.t = 0
        out = self._frame()
        for key in ("done", "terminated", "truncated"):
            out.set(key, torch.zeros(1, dtype=torch.bool))
        return out

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.t += 1
        out = self._frame()
        done = torch.tensor([self.t >= self.episode_len])
        out.set("reward", torch.ones(1))
        out.set("done", done)
        out.set("terminated", done.clone())
        out.set("truncated", torch.zeros(1, dtype=torch.bool))
        return out

    def _set_seed(self, seed: int | None) -> None:
        pass


def stamp_envs(*episode_lens: int) -> SerialEnv:
    """A SerialEnv of StampEnvs with ids 0, 1, ... and the given episode lengths."""
    return SerialEnv(
        len(episode_lens),
        [_Maker(i, n) for i, n in enumerate(episode_lens)],
    )


class _Maker:
    """A picklable env factory (spawned ParallelEnv workers need one)."""

    def __init__(self, env_id: int, episode_len: int) -> None:
        self.env_id, self.episode_len = env_id, episode_len

    def __call__(self) -> StampEnv:
        return StampEnv(self.env_id, self.episode_len)


def test_stamp_env_counts_every_frame():
    env = StampEnv(env_id=3, episode_len=4)
    check_env_specs(env)
    td = env.rollout(4)
    first = env.counter - 5  # check_env_specs rolled out before
    counters = [counter_of(f.permute(2, 0, 1)) for f in td["next", "pixels"]]
    assert counters == [first + 1, first + 2, first + 3, first + 4]
    assert counter_of(td["pixels"][0].permute(2, 0, 1)) == first
    assert env_of(td["pixels"][0].permute(2, 0, 1)) == 3
    assert td["next", "done"].squeeze(-1).tolist() == [False, False, False, True]


def test_stamp_envs_batch_keeps_ids():
    env = stamp_envs(2, 3)
    td = env.rollout(5, break_when_any_done=False)
    assert td.batch_size == (2, 5)
    ids = td["pixels"][..., 0, 0, 2]
    assert ids.tolist() == [[0] * 5, [1] * 5]
    env.close()
