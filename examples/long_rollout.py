"""A 20,000-step CartPole rollout streamed to disk, in flat memory.

    python examples/long_rollout.py        # 20,000 steps into ./long_rollout/ (FUNREC_STEPS=n)

Each transition goes through one recorder, and after every step
``write_drained`` hands what the state holds to ffmpeg (the frames) and to the
trajectory store (the steps). The process never holds more than one step, so
its memory after the first third of the rollout (the writers' buffers
filling up) is its memory at the end;
holding 20,000 rendered 400x600 frames instead would take 14 GB. The script
prints its resident memory as it goes.
"""

import os
from pathlib import Path

import psutil
from funrec_torchrl import PixelRenderTransform
from torchrl.envs import GymEnv

import funrec
from funrec.writers import TrajectoryWriter, open_video, write_drained


def main(steps: int, out: Path) -> None:
    env = GymEnv("CartPole-v1", render_mode="rgb_array").append_transform(PixelRenderTransform())
    env.set_seed(0)
    recorder = funrec.named(
        video=funrec.frames("pixels"),
        steps=funrec.select(
            ["observation", "action", ("next", "reward"), ("next", "done")], funrec.tensordicts()
        ),
        stats=funrec.episode_stats(),
    )
    state = recorder.init()
    process, rss = psutil.Process(), []  # resident memory (MiB), sampled 100 times
    with open_video(out / "video.mp4", fps=50) as video, TrajectoryWriter(out / "steps") as store:
        writers = {"video": video, "steps": store}
        td = env.reset()
        for t in range(1, steps + 1):
            td, next_root = env.step_and_maybe_reset(env.rand_action(td))
            state = write_drained(recorder.step(state, td), writers)
            td = next_root
            if t % max(steps // 100, 1) == 0:
                rss.append(process.memory_info().rss / 2**20)
                if len(rss) % 10 == 0:
                    print(f"{t:>6} steps, resident memory {rss[-1]:.0f} MiB")
    env.close()

    print(f"video: {funrec.counts(state['video']).recorded} frames in {out / 'video.mp4'}")
    print(f"episodes: {len(funrec.episodes(state['stats']))}")
    print(
        f"peak resident memory: {max(rss[:33]):.0f} MiB in the first third, "
        f"{max(rss):.0f} MiB over the whole rollout"
    )


if __name__ == "__main__":
    main(int(os.environ.get("FUNREC_STEPS", "20000")), Path("long_rollout"))
