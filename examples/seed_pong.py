"""The seed's first example (TorchRL's "Recorders" page), with only its imports changed.

Pixels already in the env output (Atari), an mp4 through CSVLogger.
"""

from funrec_torchrl import VideoRecorder
from torchrl.envs import GymEnv
from torchrl.record.loggers import CSVLogger

logger = CSVLogger("dummy-exp", video_format="mp4")
env = GymEnv("ALE/Pong-v5")
env = env.append_transform(VideoRecorder(logger, tag="rendered", in_keys=["pixels"]))
env.rollout(10)
env.transform.dump()  # Save the video and clear cache
