"""A composed pipeline: a video, a trajectory and episode statistics from one ``named(...)``.

    python examples/composed_pipeline.py          # 200 CartPole steps into ./composed/

One recorder, three recordings of the same rollout. ``funrec_torchrl.rollout``
folds it over every transition of ``env.rollout``; ``write_drained`` then hands
the frames to an mp4 and the steps to a trajectory store, and the episode
statistics are read straight from the state. ``env.rollout`` keeps the whole
rollout in memory, so the frames are rendered at a quarter of their size here;
for long rollouts, stream step by step as examples/long_rollout.py does.
"""

import os
from pathlib import Path

from funrec_torchrl import PixelRenderTransform, rollout
from torchrl.envs import GymEnv

import funrec
from funrec.writers import TrajectoryWriter, load, open_video, read_video, write_drained


def main(steps: int, out: Path) -> None:
    env = GymEnv("CartPole-v1", render_mode="rgb_array")
    env = env.append_transform(PixelRenderTransform(preproc=lambda image: image[::4, ::4]))
    env.set_seed(0)
    recorder = funrec.named(
        video=funrec.frames("pixels", skip=2),  # every second frame, 100x150
        steps=funrec.select(
            ["observation", "action", ("next", "reward"), ("next", "done")], funrec.tensordicts()
        ),
        stats=funrec.episode_stats(),
    )
    _, state = rollout(env, recorder, steps, break_when_any_done=False)
    env.close()

    with open_video(out / "video.mp4", fps=25) as video, TrajectoryWriter(out / "steps") as store:
        state = write_drained(state, {"video": video, "steps": store})

    counts = funrec.counts(state["video"])
    episodes = funrec.episodes(state["stats"])
    returns = [e.total_reward for e in episodes]
    print(f"video:    {tuple(read_video(out / 'video.mp4').shape)} ({counts})")
    print(f"steps:    {load(out / 'steps').batch_size[0]} in {out / 'steps'}")
    print(f"episodes: {len(episodes)}, mean return {sum(returns) / max(len(returns), 1):.1f}")


if __name__ == "__main__":
    main(int(os.environ.get("FUNREC_STEPS", "200")), Path("composed"))
