"""The seed examples in examples/, run as scripts against real environments."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from funrec.writers import read_video

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FULL = os.environ.get("FUNREC_FULL") == "1"


def run_example(name: str, cwd: Path, **env: str) -> str:
    """Runs ``examples/<name>`` in ``cwd`` with headless rendering; returns its stdout."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env={**os.environ, "SDL_VIDEODRIVER": "dummy", **env},
        capture_output=True,
        text=True,
        timeout=900,  # a guard against a hang, not a speed check
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def decoded_and_recorded(path: Path) -> tuple[torch.Tensor, dict]:
    """The decoded video and its sidecar; the frame count must be the recorded count."""
    video = read_video(path)
    meta = json.loads(Path(f"{path}.json").read_text())
    counts = meta["metadata"]["counts"]
    assert video.shape[0] == meta["frames"] == counts["recorded"] == counts["seen"]
    return video, meta


def test_seed_pong_writes_an_mp4_of_every_frame(tmp_path):
    run_example("seed_pong.py", tmp_path)
    videos = tmp_path / "csv_logs" / "dummy-exp" / "videos"
    assert sorted(p.name for p in videos.iterdir()) == ["rendered_0.mp4", "rendered_0.mp4.json"]
    video, meta = decoded_and_recorded(videos / "rendered_0.mp4")
    assert video.shape == (11, 3, 210, 160)  # the reset frame and 10 steps
    assert meta["fps"] == 30  # ALE's render_fps
    assert video.float().std() > 10  # a Pong court, not a blank frame


def assert_grid_of_cartpoles(video: torch.Tensor, workers: int) -> None:
    side = math.isqrt(workers)
    assert side * side == workers
    assert video.shape[1:] == (3, side * 400, side * 600)
    tiles = video.reshape(-1, 3, side, 400, side, 600).permute(0, 2, 4, 1, 3, 5)
    # Every tile of every frame: a white background with the dark cart on it.
    white = (tiles > 200).all(dim=3).float().mean(dim=(3, 4))
    dark = (tiles < 100).all(dim=3).any(dim=4).any(dim=3)
    assert (white > 0.5).all()
    assert dark.all()
    # Workers run independent episodes: the tiles of a frame are not all the same picture.
    last = tiles[-1].reshape(workers, -1).float()
    assert (last - last[0]).abs().amax() > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "example", ["seed_parallel_cartpole.py", "seed_parallel_cartpole_per_env.py"]
)
def test_seed_parallel_cartpole_writes_one_grid_video(example, tmp_path):
    workers = 16 if FULL else 4
    run_example(example, tmp_path, FUNREC_WORKERS=str(workers))
    videos = tmp_path / "csv_logs" / "dummy" / "videos"
    names = sorted(p.name for p in videos.iterdir())
    assert names == ["pixels_record_0.mp4", "pixels_record_0.mp4.json"]
    video, _ = decoded_and_recorded(videos / "pixels_record_0.mp4")
    assert_grid_of_cartpoles(video, workers)
