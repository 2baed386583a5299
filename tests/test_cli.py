"""The installed ``funrec`` command, run as a user runs it: real subprocesses, envs and files."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from faults import ctrl_c_reaches_it
from funrec_cli import sheet
from funrec_cli.errors import CliError
from funrec_cli.inspection import describe, render
from PIL import Image

from funrec import Episode
from funrec.writers import load, partials, read_video

FUNREC = Path(sys.executable).with_name("funrec")  # the console script of this venv
STEPS = 120


def funrec(*args: object, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FUNREC), *map(str, args)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang, not a speed check
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``funrec record`` with its defaults, but fewer steps, a seed and a known directory."""
    out = tmp_path_factory.mktemp("cli") / "run"
    done = funrec("record", "--steps", STEPS, "--seed", 0, "--out", out)
    assert done.returncode == 0, done.stderr
    return out, done


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def episode_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "episodes.csv", newline="") as file:
        return list(csv.DictReader(file))


def store_episodes(td) -> dict[int, list[tuple[float, int]]]:
    """Per sub-env, (return, length) of the episodes that end in a stored trajectory."""
    ids = td["episode"].reshape(td.batch_size[0], -1)
    reward = td["next", "reward"].reshape(ids.shape)
    done = td["next", "done"].reshape(ids.shape)
    found: dict[int, list[tuple[float, int]]] = {}
    for env in range(ids.shape[1]):
        for episode in ids[done[:, env], env].tolist():
            steps = ids[:, env] == episode
            found.setdefault(env, []).append((reward[steps, env].sum().item(), int(steps.sum())))
    return found


def csv_episodes(run_dir: Path) -> dict[int, list[tuple[float, int]]]:
    found: dict[int, list[tuple[float, int]]] = {}
    for row in episode_rows(run_dir):
        assert int(row["episode"]) == len(found.get(int(row["env"]), []))  # counted per env
        found.setdefault(int(row["env"]), []).append((float(row["return"]), int(row["length"])))
    return found


def assert_same_episodes(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for env, episodes in a.items():
        assert [n for _, n in episodes] == [n for _, n in b[env]]
        assert [r for r, _ in episodes] == pytest.approx([r for r, _ in b[env]])


def assert_cartpole(frames: torch.Tensor) -> None:
    """Every frame a white background with the dark cart on it; the pole moves."""
    white = (frames > 200).all(dim=-3).float().mean(dim=(-2, -1))
    dark = (frames < 60).all(dim=-3).flatten(-2).any(-1)
    assert (white > 0.5).all() and dark.all()
    assert (frames[1:] != frames[:-1]).flatten(1).any(1).float().mean() > 0.9


# -- the default run


def test_record_prints_the_run_directory_and_no_progress_bar_when_piped(run):
    out, done = run
    assert str(out) in done.stdout
    assert "mean return" in done.stdout and f"{STEPS} frames" in done.stdout
    assert done.stderr == ""  # stderr is not a TTY: no progress bar
    assert sorted(p.name for p in out.iterdir()) == [
        "contact_sheet.png",
        "episodes.csv",
        "summary.json",
        "trajectory",
        "video.mp4",
        "video.mp4.json",
    ]


def test_the_video_holds_one_frame_per_step_of_cartpole(run):
    out, _ = run
    video = read_video(out / "video.mp4")
    assert video.shape == (STEPS, 3, 400, 600)
    info = summary(out)
    assert info["steps"] == STEPS and not info["interrupted"]
    assert info["frames"] == {"seen": STEPS, "recorded": STEPS, "skipped": 0, "dropped": 0}
    assert json.loads((out / "video.mp4.json").read_text())["fps"] == 50  # CartPole's render_fps
    assert_cartpole(video)


def test_trajectory_store_episodes_csv_and_summary_agree(run):
    out, _ = run
    td = load(out / "trajectory")
    assert td.batch_size == (STEPS,)
    assert "rendered" not in td and ("next", "rendered") not in td.keys(True)
    from_csv = csv_episodes(out)
    assert len(from_csv[0]) >= 2  # a random CartPole falls within a few dozen steps
    assert_same_episodes(store_episodes(td), from_csv)
    stats = summary(out)["episodes"]
    returns = [r for r, _ in from_csv[0]]
    assert stats["finished"] == len(returns)
    assert stats["sum_return"] == pytest.approx(sum(returns))
    assert stats["sum_length"] == sum(n for _, n in from_csv[0])
    assert stats["mean_return"] == pytest.approx(sum(returns) / len(returns))


def thumbnails(image: Image.Image, count: int, height: int) -> list[torch.Tensor]:
    """The thumbnails of a 4-column sheet (240 px wide, 8 px apart, under a 34 px title)."""
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    out = []
    for i in range(count):
        x, y = 8 + (i % 4) * 248, 34 + (i // 4) * (height + 30)
        out.append(pixels[:, y : y + height, x : x + 240])
    return out


def test_contact_sheet_shows_the_sampled_frames_legibly(run):
    out, _ = run
    image = Image.open(out / "contact_sheet.png")
    assert image.size == (1000, 34 + 4 * (160 + 30))  # 16 thumbnails of 240x160, 4 by 4
    samples = sheet.sample_steps(STEPS)
    thumbs = thumbnails(image, len(samples), 160)
    assert_cartpole(torch.stack(thumbs))
    # Sampled across the rollout: a few far-apart states may look alike at 240 px, most do not.
    assert len({t.numpy().tobytes() for t in thumbs}) >= 12
    # Each thumbnail is the video frame of its step (and not another sampled step's).
    video = read_video(out / "video.mp4")
    small = [
        torch.from_numpy(
            np.array(
                Image.fromarray(video[s].permute(1, 2, 0).numpy()).resize((240, 160), Image.LANCZOS)
            )
        ).permute(2, 0, 1)
        for s in samples
    ]
    for k, thumb in enumerate(thumbs):
        errors = [(thumb.float() - frame.float()).abs().mean().item() for frame in small]
        assert errors[k] <= min(errors) + 0.5 and errors[k] < 4, (k, errors)
    # Every caption strip and the title hold light text on the dark background.
    pixels = torch.from_numpy(np.array(image.convert("L")))
    assert (pixels[:30] > 180).sum() > 200
    for i in range(len(samples)):
        x, y = 8 + (i % 4) * 248, 34 + (i // 4) * 190 + 160
        assert (pixels[y : y + 22, x : x + 240] > 180).sum() > 100


def test_inspect_json_describes_the_run_its_video_and_its_store(run, tmp_path):
    out, _ = run
    done = funrec("inspect", "--json", out)
    assert done.returncode == 0, done.stderr
    desc = json.loads(done.stdout)
    assert desc["kind"] == "run" and desc["env"] == "CartPole-v1" and desc["steps"] == STEPS
    video = desc["video"]
    assert (video["frames"], video["width"], video["height"], video["fps"]) == (STEPS, 600, 400, 50)
    assert video["duration_s"] == pytest.approx(STEPS / 50)
    assert video["layout"]["order"] == "HWC" and video["counts"]["recorded"] == STEPS
    assert desc["trajectory"]["steps"] == STEPS
    assert desc["episodes"] == summary(out)["episodes"]
    assert desc["contact_sheet"]["size"] == list(Image.open(out / "contact_sheet.png").size)
    assert f"{STEPS} frames, 600x400, 50 fps, 2.4 s" in render(describe(out / "video.mp4"))
    # The store alone: its episodes are refound from the stored rewards and done flags.
    store = describe(out / "trajectory")
    assert store["kind"] == "trajectory" and store["steps"] == STEPS and store["complete"]
    assert store["episodes"] == pytest.approx(summary(out)["episodes"])
    assert "next/reward" in store["keys"]
    # A video without its sidecar is decoded to count its frames.
    shutil.copy(out / "video.mp4", tmp_path / "bare.mp4")
    bare = describe(tmp_path / "bare.mp4")
    assert (bare["kind"], bare["frames"], bare["fps"]) == ("video", STEPS, None)


def test_inspect_into_a_closed_pipe_exits_quietly(run):
    out, _ = run
    process = subprocess.Popen(
        [str(FUNREC), "inspect", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # the reader is gone before anything is printed, as with `| head`
    assert process.wait(timeout=120) == 141
    assert process.stderr.read() == b""


KILLED_WRITER = """
import sys, time, torch
from tensordict import TensorDict
from funrec.writers import TrajectoryWriter, open_video
video = open_video(sys.argv[1] + "/clip.mp4", fps=10)
store = TrajectoryWriter(sys.argv[1] + "/steps", commit_steps=8, commit_seconds=3600)
for t in range(42):
    video.write(torch.full((1, 3, 32, 48), 6 * t, dtype=torch.uint8))
    store.append(TensorDict({"x": torch.tensor([t]), "next": {"done": torch.tensor([False])}}))
video.flush()  # every frame in ffmpeg's hands
print("written", flush=True)
time.sleep(600)
"""


def test_inspect_marks_what_a_killed_writer_left_incomplete(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "written\n"
    ffmpeg = psutil.Process(process.pid).children()
    process.kill()  # SIGKILL: no close(), no sidecar update
    process.wait()
    psutil.wait_procs(ffmpeg, timeout=120)  # ffmpeg finishes the stream it was given
    assert not (tmp_path / "clip.mp4").exists()  # never half-written: the partial holds it
    [partial] = partials(tmp_path / "clip.mp4")
    with pytest.raises(CliError, match=f"frames are in .*funrec inspect {re.escape(str(partial))}"):
        describe(tmp_path / "clip.mp4")  # the target is missing: the error names the partial
    video = describe(partial)
    assert video["complete"] is False and video["frames"] == 42  # decoded, not from the sidecar
    assert "incomplete" in render(video)
    store = describe(tmp_path / "steps")
    assert store["complete"] is False and store["steps"] == 40  # committed every 8 steps
    assert "incomplete" in render(store)


# -- other options


def test_batched_record_writes_a_grid_video_and_one_video_per_env(tmp_path):
    out = tmp_path / "run"
    done = funrec(
        "record", "--num-envs", 2, "--skip", 2, "--steps", 40, "--format", "memmap",
        "--seed", 1, "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    grid = read_video(out / "video.memmap")
    envs = [read_video(out / f"video_env{i}.memmap") for i in range(2)]
    assert grid.shape == (20, 3, 400, 1200)  # 2 envs side by side, every second step
    assert all(video.shape == (20, 3, 400, 600) for video in envs)
    assert torch.equal(grid[..., :600], envs[0]) and torch.equal(grid[..., 600:], envs[1])
    assert not torch.equal(envs[0], envs[1])  # independent sub-envs
    assert_cartpole(envs[0])
    info = summary(out)
    assert info["frames"] == {"seen": 40, "recorded": 20, "skipped": 20, "dropped": 0}
    assert info["fps"] == 25  # render_fps / skip: the video plays in real time
    td = load(out / "trajectory")
    assert td.batch_size == (40, 2)
    assert_same_episodes(store_episodes(td), csv_episodes(out))
    assert Image.open(out / "contact_sheet.png").size == (1000, 34 + 4 * (80 + 30))


def test_policy_max_frames_and_gif(tmp_path):
    (tmp_path / "lean_policy.py").write_text(
        "import torch\n"
        "def lean(td):\n"
        "    right = (td['observation'][..., 2] > 0).long()\n"
        "    td['action'] = torch.nn.functional.one_hot(right, 2)\n"
        "    return td\n"
    )
    done = funrec(
        "record", "--policy", "lean_policy:lean", "--max-frames", 8, "--format", "gif",
        "--steps", 30, "--out", "run", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run"
    td = load(out / "trajectory")
    expected = torch.nn.functional.one_hot((td["observation"][:, 2] > 0).long(), 2)
    assert torch.equal(td["action"], expected)  # every step used the named policy
    assert read_video(out / "video.gif").shape == (8, 3, 400, 600)
    info = summary(out)
    assert info["policy"] == "lean_policy:lean"
    assert info["frames"] == {"seen": 30, "recorded": 8, "skipped": 0, "dropped": 22}


# -- failures


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--steps", "0"], "--steps"),
        (["--steps", "many"], "--steps"),
        (["--num-envs", "-1"], "--num-envs"),
        (["--fps", "0"], "--fps"),
        (["--skip", "0"], "--skip"),
        (["--max-frames", "0"], "--max-frames"),
        (["--format", "avi"], "--format"),
        (["--seed", "x"], "--seed"),
        (["--policy", "no_colon"], "--policy"),
        (["--policy", "no_such_module_here:f"], "--policy"),
        (["--policy", "json:no_such_name"], "--policy"),
        (["--policy", "json:__doc__"], "--policy"),
        (["--unknown"], "--unknown"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(args, named, tmp_path):
    done = funrec("record", *args, "--out", tmp_path / "run")
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(("funrec record: error:", "funrec: error:")) and named in error
    assert not (tmp_path / "run").exists()


def assert_one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("funrec record: error: "), done.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_an_unknown_env_id_is_one_line(tmp_path):
    done = funrec("record", "--env", "CartPol-v1", "--out", tmp_path / "run")
    assert_one_line_error(done, "--env", "'CartPol-v1'", "CartPole")
    assert not (tmp_path / "run").exists()


NO_RENDER = """
import gymnasium as gym

class NoRender(gym.Env):
    metadata = {"render_modes": ["human"]}
    observation_space = gym.spaces.Box(0, 1, (2,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

gym.register("NoRender-v0", entry_point=NoRender)
"""


def test_an_env_without_rgb_array_fails_at_start_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "no_render.py").write_text(NO_RENDER)
    args = ["record", "--env", "no_render:NoRender-v0", "--debug", "--out", tmp_path / "run"]
    done = funrec(*args, PYTHONPATH=str(tmp_path))
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("funrec_cli.errors.CliError: --env 'no_render:NoRender-v0'")
    assert "['human'], without 'rgb_array'" in last


def test_an_unwritable_directory_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    done = funrec("record", "--steps", 5, "--out", tmp_path / "a_file" / "run")
    assert_one_line_error(done, "--out", "a_file/run", "Not a directory")


def test_a_used_directory_is_a_bad_argument(tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    done = funrec("record", "--out", tmp_path)
    assert done.returncode == 2
    assert "argument --out:" in done.stderr and "not an empty directory" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)])
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_line(small_disk):
    done = funrec("record", "--format", "memmap", "--steps", 50, "--out", small_disk / "run")
    assert_one_line_error(done, "No space left on device")


# -- Ctrl-C and the progress bar


def test_ctrl_c_stops_the_recording_and_keeps_what_was_recorded(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [str(FUNREC), "record", "--steps", "100000", "--quiet", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_reaches_it,
    )
    while not partials(out / "video.mp4"):  # recording has started (into the partial)
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130
    assert stdout.strip() == str(out)
    assert "interrupted" in stderr and "Traceback" not in stderr
    info = summary(out)
    assert info["interrupted"] and 0 < info["steps"] < 100000
    assert read_video(out / "video.mp4").shape[0] == info["steps"] == info["frames"]["recorded"]
    assert load(out / "trajectory").batch_size == (info["steps"],)


def in_a_terminal(*args: object) -> str:
    """What ``funrec`` prints on stdout and stderr when both are a terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24x100
    process = subprocess.Popen([str(FUNREC), *map(str, args)], stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def test_a_terminal_shows_a_progress_bar_unless_quiet(tmp_path):
    shown = in_a_terminal("record", "--steps", 10, "--out", tmp_path / "a")
    assert "/10 [" in shown and "step/s" in shown
    quiet = in_a_terminal("record", "--steps", 10, "--quiet", "--out", tmp_path / "b")
    assert quiet.strip() == str(tmp_path / "b")


# -- the contact sheet's labels


def test_labels_count_episodes_per_env_as_episodes_csv_does():
    episodes = [Episode(0, 3.0, 3), Episode(1, 4.0, 4), Episode(0, 2.0, 2)]
    assert sheet.labels([0, 2, 3, 4, 5], episodes[::2], 1) == [
        "step 0 · ep 0 · return 3",
        "step 2 · ep 0 · return 3",
        "step 3 · ep 1 · return 2",
        "step 4 · ep 1 · return 2",
        "step 5 · ep 2 · running",
    ]
    assert sheet.labels([2, 3, 4, 5], episodes, 2) == [
        "step 2 · ep 0,0",
        "step 3 · ep 1,0",
        "step 4 · ep 1,1",
        "step 5 · ep 2,1",
    ]


def test_samples_spread_over_the_rollout():
    assert sheet.sample_steps(100, 5) == (0, 25, 50, 74, 99)
    assert sheet.sample_steps(3) == (0, 1, 2)
    assert sheet.sample_steps(500)[-1] == 499 and len(sheet.sample_steps(500)) == 16
