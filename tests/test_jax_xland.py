"""A real JAX environment: XLand-MiniGrid DoorKey-5x5 with RGB observations, recorded
inside jit(scan(vmap)) to one mp4 per env, with episode statistics."""

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import funrec
from funrec.writers import read_video

ROOT = Path(__file__).resolve().parent.parent
# XLand-MiniGrid renders its tile cache on first import, into this directory: a
# temporary one (kept between runs, so it is built once per machine).
CACHE = Path(tempfile.gettempdir()) / "funrec-xland-minigrid-cache"
os.environ.setdefault("XLAND_MINIGRID_CACHE", str(CACHE))

sys.path.insert(0, str(ROOT / "examples"))
jax_xland = pytest.importorskip("jax_xland")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("xland")
    state, observations = jax_xland.record(envs=4, steps=64, chunk=16, out=out, max_steps=16)
    return out, state, observations


def test_each_env_gets_an_mp4_of_every_step(recorded):
    out, state, observations = recorded
    for i, env_state in enumerate(jax_xland.funrec_jax.export(state)):
        video = read_video(out / f"env{i}.mp4")
        assert video.shape == (64, 3, 224, 224)
        assert funrec.counts(env_state["video"]) == funrec.Counts(64, 64, 0, 0)
        # Frame for frame what the env rendered: H.264 is lossy, so each decoded frame
        # must be nearest to the observation of its own step (or an identical one).
        rendered = torch.from_numpy(np.array(observations[:, i])).movedim(-1, 1).float()
        a, b = video.float()[..., ::2, ::2], rendered[..., ::2, ::2]
        distance = torch.stack([(a - frame).abs().mean(dim=(1, 2, 3)) for frame in b], dim=1)
        own = distance.diagonal()
        assert own.max() < 16
        assert torch.all(own <= distance.min(dim=1).values + 0.5)


def test_frames_change_as_the_agents_move(recorded):
    out, _, _ = recorded
    for i in range(4):
        video = read_video(out / f"env{i}.mp4").float()
        changes = (video[1:] - video[:-1]).abs().mean(dim=(1, 2, 3))
        assert (changes > 1).sum() >= 16  # most random actions turn or move the view
        assert len({tuple(f.flatten()[::997].round().tolist()) for f in video}) > 8


def test_episode_stats_add_up_to_the_steps(recorded):
    _, state, _ = recorded
    for i, env_state in enumerate(jax_xland.funrec_jax.export(state)):
        stats = env_state["stats"]
        episodes = funrec.episodes(stats)
        assert len(episodes) >= 4  # episodes of at most 16 steps in 64
        assert {e.env for e in episodes} == {i}
        assert all(1 <= e.length <= 16 and 0 <= e.total_reward < 1 for e in episodes)
        assert sum(e.length for e in episodes) + stats.running_length[0] == 64
        assert funrec.counts(stats).recorded == len(episodes)


def test_the_example_runs_as_a_script(tmp_path, monkeypatch, capsys):
    argv = ["jax_xland.py", "--envs", "2", "--steps", "12", "--chunk", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    jax_xland.main()
    assert "env 1:" in capsys.readouterr().out
    for i in range(2):
        assert read_video(tmp_path / f"env{i}.mp4").shape == (12, 3, 224, 224)
