"""The examples in examples/ (beyond the seed ones) run as scripts, in a small configuration.

FUNREC_FULL=1 runs examples/long_rollout.py at its full 20,000 steps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import imageio_ffmpeg
from test_torchrl_examples import FULL, run_example

from funrec.writers import load, read_video


def test_quickstart_prints_what_it_recorded(tmp_path):
    out = run_example("quickstart.py", tmp_path)
    assert "'video': Counts(seen=60, recorded=" in out and "skipped=30" in out  # skip=2
    assert "(20, 2, 3, 32, 32)" in out  # max_frames=20, drop_oldest: the last 20 kept
    assert "Episode(env=1, total_reward=40.0, length=40)" in out
    assert "rewards:  120.0" in out  # 60 steps x 2 envs x reward 1


def test_composed_pipeline_writes_video_steps_and_stats_from_one_recorder(tmp_path):
    out = run_example("composed_pipeline.py", tmp_path, FUNREC_STEPS="60")
    video = read_video(tmp_path / "composed" / "video.mp4")
    assert video.shape == (30, 3, 100, 150)  # every second frame, rendered at a quarter size
    assert (video > 200).all(dim=1).float().mean() > 0.5  # CartPole's white background
    steps = load(tmp_path / "composed" / "steps")
    assert steps.batch_size == (60,)
    assert set(steps.keys(True, True)) == {
        "observation", "action", ("next", "reward"), ("next", "done"), "episode",
    }  # fmt: skip
    finished = int(steps["next", "done"].sum())
    assert f"episodes: {finished}," in out
    assert finished >= 1  # a random CartPole falls within 60 steps


def test_long_rollout_streams_in_flat_memory(tmp_path):
    steps = 20_000 if FULL else 300
    out = run_example("long_rollout.py", tmp_path, FUNREC_STEPS=str(steps))
    video = tmp_path / "long_rollout" / "video.mp4"
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))  # counted, not held
    assert frames == steps == json.loads(Path(f"{video}.json").read_text())["frames"]
    store = load(tmp_path / "long_rollout" / "steps")
    assert store.batch_size == (steps,)
    first, whole = map(float, re.search(r"(\d+) MiB in the first third, (\d+) MiB", out).groups())
    # Holding the frames would add 0.7 MB a step (200 MB at 300 steps, 14 GB at 20,000).
    assert whole - first < 40, out
