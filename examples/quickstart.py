"""Records a synthetic rollout with funrec and prints what was recorded.

Run it with ``.venv/bin/python examples/quickstart.py`` (``make setup`` makes the venv).
"""

import torch
from tensordict import TensorDict

import funrec


def synthetic_rollout(steps: int = 60, envs: int = 2, size: int = 32) -> list[TensorDict]:
    """A batched rollout: a square moving across each frame, episodes of 25 and 40 steps."""
    rollout = []
    for t in range(steps):
        pixels = torch.zeros(envs, size, size, 3, dtype=torch.uint8)
        for env in range(envs):
            x = (t * (env + 1)) % (size - 4)
            pixels[env, 10:14, x : x + 4] = 255
        done = torch.tensor([(t + 1) % 25 == 0, (t + 1) % 40 == 0])
        rollout.append(
            TensorDict(
                {"pixels": pixels, "next": {"reward": torch.ones(envs, 1), "done": done[:, None]}},
                batch_size=[envs],
            )
        )
    return rollout


recorder = funrec.named(
    video=funrec.frames("pixels", skip=2, max_frames=20, overflow="drop_oldest"),
    stats=funrec.episode_stats(),
    rewards=funrec.select([("next", "reward")], funrec.tensordicts()),
)

state = funrec.fold(recorder, synthetic_rollout())

print("counts:  ", funrec.counts(state))
print("video:   ", tuple(funrec.video(state["video"]).shape), "uint8 [T, envs, 3, H, W]")
held, _ = funrec.drain(state["video"])
print("clip:    ", tuple(funrec.clip(held).shape), "uint8 [T, 3, H, W], the envs tiled")
print("episodes:", funrec.episodes(state["stats"]))
print("rewards: ", funrec.trajectory(state["rewards"])["next", "reward"].sum().item())
