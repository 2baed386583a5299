"""Writers under faults: unwritable directory, full disk, ffmpeg killed or failing, frame size
change, SIGKILL of the writing process. Each time: a WriterError naming its cause, the target
never half-written, and every frame taken is in the partial file the error names (read back
with read_video), in the error's ``unwritten``, or still in the recorder state; nothing is
deleted to tidy up.
"""

import gc
import json
import os
import signal
import subprocess
import textwrap
import threading
import warnings
from pathlib import Path

import psutil
import pytest
import torch
from faults import (
    assert_frames_of,
    ffmpeg_writing,
    fragments,
    frame_steps,
    kill_both_after_a_fragment,
    mount_tmpfs,
    noise,
    run_python,
    small_disk,
    wait_for,
)
from tensordict import TensorDict

import funrec
from funrec.writers import (
    FORMATS,
    TrajectoryWriter,
    VideoDirectory,
    WriterError,
    load,
    open_video,
    partials,
    read_video,
    sidecar_path,
    write_drained,
)


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
def disk(tmp_path):
    """A real 2 MiB disk (tmpfs): writes fail with ENOSPC once it is full."""
    with small_disk(tmp_path / "small", "2m") as directory:
        yield directory


def where_every_frame_is(err: WriterError, state=None) -> torch.Tensor:
    """Every frame, in order: in the error's file, in its .unwritten, then in the state
    (``err.state`` when write_drained raised, else the caller's)."""
    in_file = read_video(err.path)
    assert len(in_file) == err.written
    parts = [in_file]
    if err.unwritten is not None:
        parts.append(err.unwritten)
    state = err.state if err.state is not None else state
    if state is not None:
        parts.append(funrec.video(state))
    return torch.cat([part for part in parts if len(part)])


UNWRITABLE = ["v.mp4", "v.gif", "v.pt", "v.memmap", "frames"]


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


# -- full disk (a real 2 MiB tmpfs)


@pytest.mark.parametrize("format", FORMATS)
def test_disk_full_loses_no_frame_and_deletes_nothing(disk, format):
    video = noise(300, 128, 128)  # 48 KB a frame raw (mp4: ~12 KB): 2 MiB hold 40 (160)
    name = "frames" if format == "png" else f"v.{format}"
    rec = funrec.frames("pixels")
    state = rec.init()
    writer = open_video(disk / name, format=format, fps=5)
    with pytest.raises(WriterError, match="failed after") as info:
        for start in range(0, len(video), 10):
            state = funrec.fold(rec, frame_steps(video[start : start + 10]), state)
            state = write_drained(state, writer)
        writer.close()
    err = info.value
    assert isinstance(err.__cause__, OSError | WriterError)  # the cause, chained
    assert "No space left on device" in str(err)
    assert not (disk / name).exists()  # the target is never half-written
    assert err.path == writer.partial and err.path.exists()  # nothing deleted to tidy up
    assert str(err.path) in str(err)
    assert err.state is None or err.state is state  # write_drained raised: state is not drained
    everything = where_every_frame_is(err, state)
    assert err.written > 0
    assert len(everything) == funrec.counts(state).recorded  # every frame counted is somewhere
    assert torch.equal(everything[err.written :], video[err.written : len(everything)])
    in_file = everything[: err.written]  # the partial reads back as the whole frames it holds
    if format in ("png", "pt", "memmap"):  # lossless
        assert torch.equal(in_file, video[: err.written])
    else:
        assert_frames_of(in_file, video)


def test_disk_full_trajectory_store_commits_every_step_written(disk):
    rec = funrec.tensordicts()
    state = rec.init()
    steps = [
        TensorDict({"pixels": noise(1, 64, 64, seed=t)[0], "t": torch.tensor(t)})
        for t in range(400)
    ]  # 12 KB a step: the disk fills after about 170
    writer = TrajectoryWriter(disk / "traj", done_key=None, first_chunk=4)
    with pytest.raises(WriterError, match=r"cannot allocate.*steps written so far are committed"):
        for td in steps:
            state = rec.step(state, td)
            state = write_drained(state, writer)
    assert funrec.trajectory(state)["t"].tolist() == [writer.steps]  # the failed step is held
    committed = load(disk / "traj")  # every step written was committed, even on a full disk
    assert committed["t"].tolist() == list(range(writer.steps))
    writer.close()  # trimming frees the preallocated room, so close succeeds
    loaded = load(disk / "traj")
    assert loaded["t"].tolist() == list(range(writer.steps))
    assert torch.equal(loaded["pixels"][-1], steps[writer.steps - 1]["pixels"])


# -- ffmpeg killed or failing, frame size change


def test_ffmpeg_killed_mid_stream_loses_no_frame(tmp_path):
    video = noise(40)
    path = tmp_path / "v.mp4"
    rec = funrec.frames("pixels")
    writer = open_video(path, fps=10)
    state = write_drained(funrec.fold(rec, frame_steps(video[:30])), writer)  # 3 keyframes
    writer.flush()
    wait_for(lambda: fragments(writer.partial) >= 1, "a complete mp4 fragment")
    ffmpeg = ffmpeg_writing(writer.partial)
    ffmpeg.kill()  # not reaped here: the writer must see the exit code itself
    wait_for(lambda: ffmpeg.status() == psutil.STATUS_ZOMBIE, "ffmpeg to die")
    state = funrec.fold(rec, frame_steps(video[30:]), state)
    try:  # taken if the writer has not noticed yet; then close() reports it
        state = write_drained(state, writer)
        writer.close()
    except WriterError as failed:
        err = failed
    assert "ffmpeg exited with code -9" in str(err) and "another path" in str(err)
    assert err.path == writer.partial and not path.exists()
    everything = where_every_frame_is(err)
    assert len(everything) == 40  # in the file, in err.unwritten, or in the state
    assert err.written >= 5  # most of the first fragment at least
    assert_frames_of(everything[: err.written], video)
    assert torch.equal(everything[err.written :], video[err.written :])
    info = json.loads(sidecar_path(err.path).read_text())
    assert info["complete"] is False and "-9" in info["error"] and info["written"] == err.written
    with pytest.raises(WriterError, match="closed"):
        writer.write(video[:1])
    with open_video(tmp_path / "retry.mp4", fps=10) as retry:  # the rest, to another path
        retry.write(everything[err.written :])
    assert_frames_of(read_video(tmp_path / "retry.mp4"), video, start=err.written)


def test_ffmpeg_failing_to_start_an_encoder_is_reported_and_keeps_the_frames(tmp_path):
    path = tmp_path / "v.mp4"
    video = noise(40)
    writer = open_video(path, codec="no-such-encoder")
    with pytest.raises(WriterError, match=r"ffmpeg exited.*no-such-encoder") as info, writer:
        for start in range(0, 40, 10):  # ffmpeg may die before or after the pipe fills
            writer.write(video[start : start + 10])
    err = info.value
    assert not path.exists() and err.written == 0
    assert torch.equal(err.unwritten, video[: len(err.unwritten)])  # every frame taken
    assert len(err.unwritten) == writer.frames
    assert json.loads(sidecar_path(writer.partial).read_text())["complete"] is False


def test_frame_size_change_keeps_the_file_complete(tmp_path):
    path = tmp_path / "v.mp4"
    video = noise(12)
    with open_video(path, fps=10) as writer:
        writer.write(video)
        with pytest.raises(ValueError, match=r"from 64x96 to 32x32.*another path"):
            writer.write(noise(1, 32, 32))
    decoded = read_video(path)
    assert len(decoded) == 12
    assert_frames_of(decoded, video)
    assert json.loads(sidecar_path(path).read_text())["complete"] is True


def test_a_failed_writer_leaves_no_open_file_or_process(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer = open_video(tmp_path / "v.mp4", codec="no-such-encoder")
        with pytest.raises(WriterError):
            for _ in range(10):
                writer.write(noise(10))
            writer.close()
        del writer
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert [p for p in psutil.Process().children() if "ffmpeg" in p.name()] == []


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
        for start in range(0, 90, 10):
            writer.write(video[start : start + 10])
        writer.flush()  # every frame taken is in ffmpeg's hands
    elif kind == "traj-steps":
        writer = TrajectoryWriter(path, done_key=None, commit_steps=10, commit_seconds=3600)
        for t in range(95):
            writer.append(TensorDict({"t": torch.tensor(t), "x": torch.full((4,), float(t))}))
    elif kind == "traj-seconds":
        writer = TrajectoryWriter(path, done_key=None, commit_steps=10**6, commit_seconds=0.2)
        for t in range(50):
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
    child = run_python(CHILD, kind, path)
    assert child.stdout.readline().strip() == "written"
    return child


def test_sigkill_of_writer_and_ffmpeg_leaves_a_playable_partial(tmp_path):
    path = tmp_path / "v.mp4"
    child = start_child("mp4", path)
    [partial] = partials(path)
    kill_both_after_a_fragment(child, partial)
    decoded = read_video(partial)
    assert len(decoded) >= 15  # most of the first fragment at least (a keyframe a second)
    assert_frames_of(decoded, noise(90))
    assert json.loads(sidecar_path(partial).read_text())["complete"] is False
    assert not path.exists()


def test_sigkill_of_the_writer_lets_ffmpeg_finish_every_frame_handed_over(tmp_path):
    path = tmp_path / "v.mp4"
    child = start_child("mp4", path)
    [partial] = partials(path)
    ffmpeg = ffmpeg_writing(partial, psutil.Process(child.pid))
    child.kill()  # ffmpeg reads end-of-file on its pipe and finishes the file
    child.wait()
    ffmpeg.wait()
    decoded = read_video(partial)
    assert len(decoded) == 90
    assert_frames_of(decoded, noise(90))


def test_sigkill_of_a_trajectory_writer_loses_less_than_commit_steps(tmp_path):
    path = tmp_path / "traj"
    child = start_child("traj-steps", path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    loaded = load(path)
    assert loaded["t"].tolist() == list(range(90))  # commits every 10 steps: 5 are lost
    assert torch.equal(loaded["x"][:, 0], torch.arange(90.0))
    assert json.loads((path / "index.json").read_text())["complete"] is False


def test_a_trajectory_writer_commits_within_commit_seconds_without_more_steps(tmp_path):
    path = tmp_path / "traj"
    child = start_child("traj-seconds", path)  # then idle: only the timer can commit
    index = path / "index.json"
    wait_for(lambda: json.loads(index.read_text())["steps"] == 50, "the timed commit")
    child.kill()
    child.wait()
    assert load(path)["t"].tolist() == list(range(50))


def test_sigkill_with_video_keys_loads_a_consistent_prefix(tmp_path):
    path = tmp_path / "traj"
    child = start_child("traj-video", path)
    [partial] = partials(path / "pixels.0.mp4")
    kill_both_after_a_fragment(child, partial)
    loaded = load(path)
    # the steps whose data and frame both reached the disk, at most the committed ones
    steps = len(loaded)
    assert 1 <= steps <= json.loads((path / "index.json").read_text())["steps"]
    assert loaded["t"].tolist() == list(range(steps))
    levels = loaded["pixels"].float().mean(dim=(1, 2, 3))
    assert (levels - 2 * torch.arange(steps)).abs().max() < 3


def test_a_stalled_encoder_blocks_the_writer_and_drops_nothing(tmp_path):
    video = noise(40, 300, 400)  # 360 KB a frame: the writer queues up to 4 MB
    path = tmp_path / "v.mp4"
    writer = open_video(path, fps=10)
    writer.write(video[0])
    writer.flush()
    ffmpeg = ffmpeg_writing(writer.partial)
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
    # While ffmpeg is stopped, 4 MB of frames are queued (11), one is in the pipe, and then
    # the writer blocks instead of buffering more or dropping.
    assert feeder.is_alive() and len(handed) <= 14
    ffmpeg.resume()
    feeder.join()
    writer.close()
    decoded = read_video(path)
    assert len(decoded) == 40
    assert_frames_of(decoded, video)


def test_killed_before_the_first_fragment_reads_as_empty(tmp_path):
    video_path = tmp_path / "v.mp4"
    writer = open_video(video_path, fps=10)
    writer.write(noise(2))  # x264 holds these: no fragment can be complete yet
    writer.flush()
    ffmpeg = ffmpeg_writing(writer.partial)
    ffmpeg.kill()
    wait_for(lambda: ffmpeg.status() == psutil.STATUS_ZOMBIE, "ffmpeg to die")
    assert read_video(writer.partial).shape == (0, 3, 64, 96)
    with pytest.raises(WriterError, match="-9") as info:
        writer.close()
    assert torch.equal(info.value.unwritten, noise(2))  # handed back, not lost

    store = tmp_path / "traj"
    writer = TrajectoryWriter(store, done_key=None, video_keys=["pixels"], fps=10)
    for t in range(3):
        writer.append(TensorDict({"t": torch.tensor(t), "pixels": noise(1, seed=t)[0]}))
    writer.flush()  # 3 steps committed, but not one frame on disk
    [partial] = partials(store / "pixels.0.mp4")
    ffmpeg = ffmpeg_writing(partial)
    ffmpeg.kill()
    wait_for(lambda: ffmpeg.status() == psutil.STATUS_ZOMBIE, "ffmpeg to die")
    assert load(store).batch_size == (0,)  # data and pixels agree: no step has both
    with pytest.raises(WriterError, match="-9"):
        writer.close()
    assert json.loads((store / "index.json").read_text())["complete"] is False
    assert load(store).batch_size == (0,)
