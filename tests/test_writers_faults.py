"""Writers under faults: unwritable directory, full disk, ffmpeg killed, frame size change,
and SIGKILL of the writing process. Each time: a clear error, the final name holds a
complete file or nothing (an mp4 a playable prefix), and the recorder state keeps
every frame that was not written, so the caller can retry elsewhere.
"""

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch
from tensordict import TensorDict

import funrec
from funrec.writers import (
    TrajectoryWriter,
    VideoDirectory,
    WriterError,
    load,
    open_video,
    read_video,
    sidecar_path,
    write_drained,
)

ROOT = Path(__file__).resolve().parent.parent


def noise(steps: int, height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    """Incompressible frames (they fill a small disk fast): uint8 [T, 3, H, W]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (steps, 3, height, width), dtype=torch.uint8, generator=generator)


def frame_steps(video: torch.Tensor) -> list[TensorDict]:
    return [TensorDict({"pixels": frame}) for frame in video]  # CHW, read as such


def assert_prefix_of(decoded: torch.Tensor, video: torch.Tensor) -> None:
    """Every decoded frame is the written frame at its index (the closest one by far)."""
    assert 0 < len(decoded) <= len(video)
    for t in range(len(decoded)):
        errors = (decoded[t].float() - video.float()).abs().mean(dim=(1, 2, 3))
        assert int(errors.argmin()) == t


def mount_tmpfs(directory: Path, options: str) -> bool:
    """Mounts a tmpfs on a new ``directory`` (root only); False when that is not possible."""
    directory.mkdir()
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return False
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)]
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory nobody can create files in: a read-only tmpfs as root, else chmod 555."""
    directory = tmp_path / "ro"
    if mount_tmpfs(directory, "ro,size=64k"):
        yield directory
        subprocess.run(["umount", "-l", str(directory)], check=False)
    elif os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
    else:
        pytest.skip("root without mount rights: no directory is unwritable to root")


@pytest.fixture
def small_disk(tmp_path):
    """A directory whose disk fills after ~200 KB: a 200k tmpfs as root (ENOSPC); otherwise
    a 200 KB file-size limit (RLIMIT_FSIZE, EFBIG; inherited by ffmpeg)."""
    directory = tmp_path / "small"
    if mount_tmpfs(directory, "size=200k"):
        yield directory
        subprocess.run(["umount", "-l", str(directory)], check=False)
        return
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, old_limit[1]))
    try:
        yield directory
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def wait_for(condition, what: str, limit: float = 120.0) -> None:
    """Polls ``condition`` (a liveness bound, not a timing assertion)."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def fragments(path: Path) -> int:
    """How many complete fragments an mp4 holds so far (a ``moof`` box is written with its data)."""
    return path.read_bytes().count(b"moof") if path.exists() else 0


def ffmpeg_writing(path: Path, parent: psutil.Process | None = None) -> psutil.Process:
    parent = parent or psutil.Process()
    for child in parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "ffmpeg" in child.name() and str(path) in child.cmdline():
                return child
    raise AssertionError(f"no ffmpeg writing {path}")


# -- unwritable directory


@pytest.mark.parametrize("name", ["v.mp4", "v.gif", "v.pt", "v.memmap", "frames"])
def test_unwritable_directory_fails_at_open(unwritable_dir, name):
    path = unwritable_dir / name
    with pytest.raises(WriterError, match=r"not writable.*choose a writable directory") as info:
        open_video(path, format="png" if name == "frames" else None)
    assert str(unwritable_dir) in str(info.value)
    assert list(unwritable_dir.iterdir()) == []


def test_unwritable_directory_for_directory_target_and_store(unwritable_dir, tmp_path):
    with pytest.raises(WriterError, match="not writable"):
        VideoDirectory(unwritable_dir / "exp").log_video("pixels", noise(2))
    with pytest.raises(WriterError, match="cannot create"):
        TrajectoryWriter(unwritable_dir / "traj")
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(WriterError, match="not writable"):
        open_video(afile / "v.mp4")  # a parent that is a file


# -- full disk


def test_disk_full_mp4_keeps_a_playable_prefix_and_the_state(small_disk, tmp_path):
    video = noise(120)
    rec = funrec.frames("pixels")
    state = rec.init()
    path = small_disk / "v.mp4"
    writer = open_video(path, fps=5)  # a keyframe (a fragment) every 5 frames
    with pytest.raises(WriterError, match=r"failed after \d+ frames.*prefix") as info:
        for start in range(0, 120, 10):
            state = funrec.fold(rec, frame_steps(video[start : start + 10]), state)
            state = write_drained(state, writer)
    assert "ffmpeg exited" in str(info.value)
    held = funrec.video(state)
    assert len(held) == 10  # the batch that failed is still in the state
    first_held = start
    assert torch.equal(held, video[first_held : first_held + 10])
    assert_prefix_of(read_video(path), video)
    assert json.loads(sidecar_path(path).read_text())["complete"] is False
    with open_video(tmp_path / "retry.pt") as retry:  # nothing lost: retry elsewhere
        write_drained(state, retry)
    assert torch.equal(read_video(tmp_path / "retry.pt"), held)


@pytest.mark.parametrize("name", ["v.pt", "v.memmap", "v.gif", "frames"])
def test_disk_full_atomic_formats_leave_nothing(small_disk, name):
    path = small_disk / name
    writer = open_video(path, format="png" if name == "frames" else None)
    with pytest.raises(WriterError, match="No file was left"), writer:
        for start in range(0, 12, 2):  # 300 KB frames: even one png does not fit
            writer.write(noise(2, 320, 320, seed=start))
    assert list(small_disk.iterdir()) == []  # no final file, no temporary


def test_disk_full_trajectory_store_keeps_committed_steps(small_disk):
    rec = funrec.tensordicts()
    state = rec.init()
    steps = [
        TensorDict({"pixels": noise(1, 32, 32, seed=t)[0], "t": torch.tensor(t)})
        for t in range(100)
    ]  # 3 KB a step
    writer = TrajectoryWriter(small_disk / "traj", done_key=None, first_chunk=4)
    with pytest.raises(WriterError, match=r"cannot allocate.*steps written so far are committed"):
        for td in steps:
            state = rec.step(state, td)
            state = write_drained(state, writer)
    assert funrec.trajectory(state)["t"].tolist() == [writer.steps]  # the failed step is held
    committed = load(small_disk / "traj")
    assert committed["t"].tolist() == list(range(len(committed)))
    assert len(committed) >= 4
    writer.close()  # trimming frees the preallocated room, so close succeeds
    loaded = load(small_disk / "traj")
    assert loaded["t"].tolist() == list(range(writer.steps))
    assert torch.equal(loaded["pixels"][-1], steps[writer.steps - 1]["pixels"])


# -- ffmpeg killed, frame size change


def test_ffmpeg_killed_mid_stream(tmp_path):
    video = noise(40)
    path = tmp_path / "v.mp4"
    rec = funrec.frames("pixels")
    writer = open_video(path, fps=10)
    state = write_drained(funrec.fold(rec, frame_steps(video[:30])), writer)  # 3 keyframes
    wait_for(lambda: fragments(path) >= 1, "a complete mp4 fragment")
    ffmpeg = ffmpeg_writing(path)
    ffmpeg.kill()  # not reaped here: the writer must see the exit code itself
    wait_for(lambda: ffmpeg.status() == psutil.STATUS_ZOMBIE, "ffmpeg to die")
    state = funrec.fold(rec, frame_steps(video[30:]), state)
    with pytest.raises(WriterError, match=r"ffmpeg exited with code -9.*another path"):
        write_drained(state, writer)
    assert torch.equal(funrec.video(state), video[30:])  # still held
    decoded = read_video(path)
    # At least most of the first fragment (10 frames; B-frame reordering may hold back
    # the last frame or two of the last fragment).
    assert len(decoded) >= 5
    assert_prefix_of(decoded, video)
    info = json.loads(sidecar_path(path).read_text())
    assert info["complete"] is False and "-9" in info["error"]
    with pytest.raises(WriterError, match="closed"):
        writer.write(video[:1])
    with open_video(tmp_path / "retry.mp4", fps=10) as retry:
        write_drained(state, retry)
    assert_prefix_of(read_video(tmp_path / "retry.mp4"), video[30:])


def test_ffmpeg_failing_to_start_an_encoder_is_reported(tmp_path):
    path = tmp_path / "v.mp4"
    writer = open_video(path, codec="no-such-encoder")
    with pytest.raises(WriterError, match=r"ffmpeg exited.*no-such-encoder"), writer:
        for start in range(0, 40, 10):  # ffmpeg may die before or after the pipe fills
            writer.write(noise(10, seed=start))
    assert not path.exists()  # ffmpeg gave up before creating the file
    assert json.loads(sidecar_path(path).read_text())["complete"] is False


def test_frame_size_change_keeps_the_file_complete(tmp_path):
    path = tmp_path / "v.mp4"
    video = noise(12)
    with open_video(path, fps=10) as writer:
        writer.write(video)
        with pytest.raises(ValueError, match=r"from 64x96 to 32x32.*another path"):
            writer.write(noise(1, 32, 32))
    decoded = read_video(path)
    assert len(decoded) == 12
    assert_prefix_of(decoded, video)
    assert json.loads(sidecar_path(path).read_text())["complete"] is True


# -- SIGKILL of the writing process

CHILD = textwrap.dedent(
    """
    import sys, time, torch
    from funrec.writers import open_video, TrajectoryWriter
    from tensordict import TensorDict
    kind, path = sys.argv[1], sys.argv[2]
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (90, 3, 64, 96), dtype=torch.uint8, generator=g)
    if kind == "mp4":
        writer = open_video(path, fps=30)
        writer.write(video)
    elif kind == "traj":
        writer = TrajectoryWriter(path, done_key=None, first_chunk=8)
        for t in range(100):
            writer.append(TensorDict({"t": torch.tensor(t), "x": torch.full((4,), float(t))}))
    else:  # a store with an mp4 image key
        writer = TrajectoryWriter(path, done_key=None, first_chunk=8, video_keys=["pixels"])
        for t in range(100):
            pixels = torch.full((32, 32, 3), 2 * t, dtype=torch.uint8)
            writer.append(TensorDict({"t": torch.tensor(t), "pixels": pixels}))
    print("written", flush=True)
    time.sleep(3600)
    """
)


def start_child(kind: str, path: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout.readline().strip() == "written"
    return child


def test_sigkill_of_writer_and_ffmpeg_leaves_a_playable_mp4_prefix(tmp_path):
    path = tmp_path / "v.mp4"
    child = start_child("mp4", path)
    ffmpeg = ffmpeg_writing(path, psutil.Process(child.pid))
    wait_for(lambda: fragments(path) >= 1, "a complete mp4 fragment")
    ffmpeg.kill()  # the whole process tree dies, as under the OOM killer
    child.kill()
    child.wait()
    ffmpeg.wait()
    decoded = read_video(path)
    assert len(decoded) >= 15  # most of the first fragment at least (a keyframe a second)
    assert_prefix_of(decoded, noise(90))
    assert json.loads(sidecar_path(path).read_text())["complete"] is False


def test_sigkill_of_the_writer_lets_ffmpeg_finish_every_piped_frame(tmp_path):
    path = tmp_path / "v.mp4"
    child = start_child("mp4", path)
    ffmpeg = ffmpeg_writing(path, psutil.Process(child.pid))
    child.kill()  # ffmpeg reads end-of-file on its pipe and finishes the file
    child.wait()
    ffmpeg.wait()
    decoded = read_video(path)
    assert len(decoded) == 90
    assert_prefix_of(decoded, noise(90))


def test_sigkill_of_the_writer_leaves_a_loadable_trajectory_prefix(tmp_path):
    path = tmp_path / "traj"
    child = start_child("traj", path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    loaded = load(path)
    # chunks of 8, 16, 32 steps filled and committed; the 4th (64) was not full
    assert loaded["t"].tolist() == list(range(56))
    assert torch.equal(loaded["x"][:, 0], torch.arange(56.0))
    assert json.loads((path / "index.json").read_text())["complete"] is False


def test_a_stalled_encoder_blocks_the_writer_and_drops_nothing(tmp_path):
    import threading

    video = noise(60)  # 18 KB a frame; the pipe holds 64 KB
    path = tmp_path / "v.mp4"
    writer = open_video(path, fps=10)
    writer.write(video[0])
    ffmpeg = ffmpeg_writing(path)
    ffmpeg.suspend()  # the slowest encoder: one that does nothing
    wait_for(lambda: ffmpeg.status() == psutil.STATUS_STOPPED, "ffmpeg to stop")
    handed = []

    def feed():
        for frame in video[1:]:
            writer.write(frame)
            handed.append(1)

    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join(1.0)
    # While ffmpeg is stopped, at most a pipe's worth of frames (64 KB: 3) gets through:
    # the writer blocks instead of buffering or dropping.
    assert feeder.is_alive() and len(handed) <= 4
    ffmpeg.resume()
    feeder.join()
    writer.close()
    decoded = read_video(path)
    assert len(decoded) == 60
    assert_prefix_of(decoded, video)


def test_sigkill_with_video_keys_loads_a_consistent_prefix(tmp_path):
    path = tmp_path / "traj"
    child = start_child("traj-video", path)
    ffmpeg = ffmpeg_writing(path / "pixels.0.mp4", psutil.Process(child.pid))
    wait_for(lambda: fragments(path / "pixels.0.mp4") >= 1, "a complete mp4 fragment")
    ffmpeg.kill()
    child.kill()
    child.wait()
    ffmpeg.wait()
    loaded = load(path)
    # the steps whose data and frame both reached the disk: at most the 56 committed
    steps = len(loaded)
    assert 1 <= steps <= 56
    assert loaded["t"].tolist() == list(range(steps))
    levels = loaded["pixels"].float().mean(dim=(1, 2, 3))
    assert (levels - 2 * torch.arange(steps)).abs().max() < 3


def test_killed_before_the_first_fragment_reads_as_empty(tmp_path):
    video_path = tmp_path / "v.mp4"
    writer = open_video(video_path, fps=10)
    writer.write(noise(2))  # x264 holds these: no fragment can be complete yet
    ffmpeg = ffmpeg_writing(video_path)
    ffmpeg.kill()
    wait_for(lambda: ffmpeg.status() == psutil.STATUS_ZOMBIE, "ffmpeg to die")
    assert read_video(video_path).shape == (0, 3, 64, 96)
    with pytest.raises(WriterError, match="-9"):
        writer.close()

    store = tmp_path / "traj"
    writer = TrajectoryWriter(store, done_key=None, video_keys=["pixels"], fps=10)
    for t in range(3):
        writer.append(TensorDict({"t": torch.tensor(t), "pixels": noise(1, seed=t)[0]}))
    writer.flush()  # 3 steps committed, but not one frame on disk
    ffmpeg = ffmpeg_writing(store / "pixels.0.mp4")
    ffmpeg.kill()
    wait_for(lambda: ffmpeg.status() == psutil.STATUS_ZOMBIE, "ffmpeg to die")
    assert load(store).batch_size == (0,)  # data and pixels agree: no step has both
    with pytest.raises(WriterError, match="-9"):
        writer.close()
    assert json.loads((store / "index.json").read_text())["complete"] is False
    assert load(store).batch_size == (0,)
