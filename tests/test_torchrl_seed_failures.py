"""The TorchRL 0.14.1 failures issue 5 lists, reproduced side by side with funrec_torchrl.

Each test runs one scenario with ``torchrl.record``'s class, checks that it
fails the way the issue says, then runs it with ``funrec_torchrl``'s and checks
that it works. (The seed's ParallelEnv example and its hang are covered by
test_torchrl_examples.py and test_torchrl_parallel.py.)
"""

from __future__ import annotations

from pathlib import Path

import funrec_torchrl
import pytest
import torch
import torchrl.record as torchrl_record
from test_torchrl_envs import StampEnv, counter_of, stamp_envs
from torchrl.envs import TransformedEnv
from torchrl.record.loggers import CSVLogger

from funrec.writers import read_video


def test_mp4_through_csvlogger_needs_no_torchcodec_and_loses_nothing(tmp_path):
    logger = CSVLogger("torchrl", log_dir=str(tmp_path), video_format="mp4")
    env = TransformedEnv(StampEnv(), torchrl_record.VideoRecorder(logger, "run", skip=1))
    env.rollout(5)
    with pytest.raises(ModuleNotFoundError, match="torchcodec"):
        env.transform.dump()
    assert env.transform.obs == []  # the frames are gone

    logger = CSVLogger("funrec", log_dir=str(tmp_path), video_format="mp4")
    env = TransformedEnv(StampEnv(), funrec_torchrl.VideoRecorder(logger, "run"))
    env.rollout(5)
    env.transform.dump()
    assert read_video(tmp_path / "funrec" / "videos" / "run_0.mp4").shape[0] == 6


def test_tensordict_recorder_dump_works_and_uses_out_file_base(tmp_path):
    base = str(tmp_path / "traj")
    env = TransformedEnv(StampEnv(), torchrl_record.TensorDictRecorder(base, skip=1))
    env.rollout(3)
    with pytest.raises(AttributeError, match="tag"):
        env.transform.dump()

    env = TransformedEnv(StampEnv(), funrec_torchrl.TensorDictRecorder(base, skip=1))
    env.rollout(3)
    env.transform.dump()
    assert torch.load(Path(f"{base}_tensordict.t"), weights_only=False).batch_size == (3,)


def test_default_skip_records_every_frame_of_a_single_env():
    env = TransformedEnv(StampEnv(), torchrl_record.VideoRecorder(None, "run"))
    env.rollout(10)
    assert [counter_of(f) for f in env.transform.obs] == [1, 3, 5, 7, 9]  # half dropped

    env = TransformedEnv(StampEnv(), funrec_torchrl.VideoRecorder(None, "run"))
    env.rollout(10)
    assert [counter_of(f) for f in env.transform.videos()["run"]] == list(range(11))


def test_several_in_keys_make_several_videos():
    keys = ["pixels", "pixels2"]
    env = TransformedEnv(StampEnv(), torchrl_record.VideoRecorder(None, "run", in_keys=keys))
    env.rollout(2)
    # TorchRL (default skip 2 on a single env) keeps every other frame of the interleaved stream
    interleaved = [int(f[2, 0, 0]) for f in env.transform.obs]
    assert interleaved == [255, 255, 255]  # only the negatives: pixels never got in

    env = TransformedEnv(StampEnv(), funrec_torchrl.VideoRecorder(None, "run", in_keys=keys))
    env.rollout(2)
    videos = env.transform.videos()
    assert [counter_of(f) for f in videos["run_pixels"]] == [0, 1, 2]
    assert torch.equal(videos["run_pixels2"], 255 - videos["run_pixels"])


def test_dump_on_done_cuts_each_sub_env_at_its_own_episode_end():
    env = TransformedEnv(
        stamp_envs(2, 3), torchrl_record.VideoRecorder(None, "grid", dump_on_done=True)
    )
    env.rollout(6, break_when_any_done=False)
    assert env.transform.iter == 1  # only step 6, where both were done at once

    recorder = funrec_torchrl.VideoRecorder(None, "ep", make_grid=False, dump_on_done=True)
    env = TransformedEnv(stamp_envs(2, 3), recorder)
    env.rollout(6, break_when_any_done=False)
    assert recorder._env_dumps == {"ep_env0": 3, "ep_env1": 2}
