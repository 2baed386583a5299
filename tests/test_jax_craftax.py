"""Craftax-Classic (63x63 float pixels in [0, 1]) recorded inside jit(scan(vmap)): per-env
mp4s, the float scale decided by the core's rule, episode statistics.

Slow (compiling Craftax takes minutes on CPU) and skipped where craftax is not
installed: it needs the ``craftax`` extra in its own venv (docs/jax.md).
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import funrec
from funrec.writers import read_video

pytest.importorskip("craftax", reason="the craftax extra lives in its own venv (docs/jax.md)")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import jax_craftax

FULL = os.environ.get("FUNREC_FULL") == "1"


@pytest.mark.slow
def test_craftax_pixels_are_recorded_per_env_with_the_float_scale(tmp_path):
    envs, steps, chunk = (4, 96, 32) if FULL else (2, 40, 16)
    state, observations = jax_craftax.record(envs, steps, chunk, tmp_path, max_steps=16)
    observations = np.asarray(observations)
    assert observations.dtype == np.float32 and observations.max() <= 1
    for i, env_state in enumerate(jax_craftax.funrec_jax.export(state)):
        assert funrec.counts(env_state["video"]) == funrec.Counts(steps, steps, 0, 0)
        assert env_state["video"].layout.scale == 255  # [0, 1] floats, from the first frame
        video = read_video(tmp_path / f"env{i}.mp4").float()
        assert video.shape == (steps, 3, 63, 63)
        # each decoded frame is nearest to its own step's observation, scaled to [0, 255]
        rendered = torch.from_numpy(observations[:, i] * 255).movedim(-1, 1)
        distance = torch.stack([(video - frame).abs().mean(dim=(1, 2, 3)) for frame in rendered])
        own = distance.diagonal()
        assert own.max() < 16
        assert torch.all(own <= distance.min(dim=0).values + 0.5)
        episodes = funrec.episodes(env_state["stats"])
        assert len(episodes) >= steps // 16 - 1 and {e.env for e in episodes} == {i}
        assert all(1 <= e.length <= 16 for e in episodes)
        running = env_state["stats"].running_length[0]
        assert sum(e.length for e in episodes) + running == steps
