"""The seed's second example, per-env variant: its two commented switches flipped.

Each ParallelEnv worker renders its own env (PixelRenderTransform inside
make_env); the outer VideoRecorder tiles the workers' frames into one grid.
The number of workers is 16 as in the seed unless FUNREC_WORKERS says otherwise
(the test suite runs fewer on small machines).
"""

import os

from funrec_torchrl import PixelRenderTransform, VideoRecorder
from torchrl.envs import EnvCreator, GymEnv, ParallelEnv, check_env_specs
from torchrl.record.loggers import CSVLogger


def make_env():
    env = GymEnv("CartPole-v1", render_mode="rgb_array")
    # Uncomment this line to execute per-env
    env = env.append_transform(PixelRenderTransform())
    return env


if __name__ == "__main__":
    logger = CSVLogger("dummy", video_format="mp4")

    env = ParallelEnv(int(os.environ.get("FUNREC_WORKERS", "16")), EnvCreator(make_env))
    env.start()
    # Comment this line to execute per-env
    # env = env.append_transform(PixelRenderTransform())

    env = env.append_transform(VideoRecorder(logger=logger, tag="pixels_record"))
    env.rollout(3)

    check_env_specs(env)

    r = env.rollout(30)
    env.transform.dump()
    env.close()
