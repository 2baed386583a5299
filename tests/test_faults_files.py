"""Names and files: a crash never destroys a finished video or another run's partial, any name
the file system takes works, and a sidecar that no longer describes its file is not trusted.
"""

import json
import subprocess
import textwrap

import pytest
import torch
from faults import assert_frames_of, kill_both_after_a_fragment, noise, run_python, wait_for

from funrec.writers import (
    FORMATS,
    VideoDirectory,
    iter_video,
    open_video,
    partials,
    read_video,
    sidecar_path,
)

REWRITE = textwrap.dedent(
    """
    import sys, time, torch
    from funrec.writers import open_video
    g = torch.Generator().manual_seed(1)
    writer = open_video(sys.argv[1], fps=10)
    writer.write(torch.randint(0, 256, (60, 3, 64, 96), dtype=torch.uint8, generator=g))
    writer.flush()
    print(writer.partial, flush=True)
    time.sleep(3600)
    """
)


def test_a_crash_while_rewriting_a_video_keeps_the_finished_one(tmp_path):
    path = tmp_path / "v.mp4"
    old = noise(20)
    with open_video(path, fps=10) as writer:
        writer.write(old)
    child = run_python(REWRITE, path)
    partial = type(path)(child.stdout.readline().strip())
    kill_both_after_a_fragment(child, partial)
    assert_frames_of(read_video(path), old)  # the finished video, whole
    assert len(read_video(path)) == 20
    assert partials(path) == [partial]  # and the crashed run's frames beside it
    assert_frames_of(read_video(partial), noise(60, seed=1))


RECORDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from torchrl.envs import TransformedEnv
    from torchrl.record.loggers import CSVLogger
    sys.path.insert(0, "tests")
    from test_torchrl_envs import StampEnv
    from funrec_torchrl import VideoRecorder

    logger = CSVLogger("exp", log_dir=sys.argv[1], video_format="mp4")
    env = TransformedEnv(StampEnv(), VideoRecorder(logger, "run", fps=10))
    env.rollout(int(sys.argv[2]))
    env.transform._writers["run"].flush()
    print("recorded", flush=True)
    if sys.argv[3] == "crash":
        time.sleep(3600)
    env.transform.dump()
    """
)


def run_script(root, steps: int, how: str) -> subprocess.Popen:
    child = run_python(RECORDER_SCRIPT, root, steps, how)
    assert child.stdout.readline().strip() == "recorded"
    return child


def test_rerunning_a_crashed_recorder_script_keeps_the_crashed_runs_frames(tmp_path):
    videos = tmp_path / "exp" / "videos"
    crashed = run_script(tmp_path, 29, "crash")
    crashed.kill()  # ffmpeg (its own process) finishes the partial with every frame
    crashed.wait()
    [first] = partials(videos / "run.mp4")
    wait_for(lambda: len(read_video(first)) == 30, "ffmpeg to finish the crashed run's file")
    rerun = run_script(tmp_path, 9, "dump")
    assert rerun.wait() == 0
    assert partials(videos / "run.mp4") == [first]  # not truncated by the re-run
    assert len(read_video(first)) == 30
    assert len(read_video(videos / "run_0.mp4")) == 10
    meta = json.loads(sidecar_path(first).read_text())
    assert meta["complete"] is False and meta["metadata"]["key"] == "pixels"


NAMES = ["run-12:30:00", "-starts-with-dash", "100%-done %d", "spaces and: colons"]


@pytest.mark.parametrize("format", FORMATS)
def test_any_name_the_file_system_takes_works(tmp_path, monkeypatch, format):
    monkeypatch.chdir(tmp_path)  # relative names, as a user types them
    frames = torch.zeros(3, 3, 16, 16, dtype=torch.uint8)
    frames[1, 0] = 200
    for name in NAMES:
        path = name if format == "png" else f"{name}.{format}"
        with open_video(path, format=format, fps=10) as writer:
            writer.write(frames)
        video = read_video(path)
        assert video.shape == (3, 3, 16, 16), name
        assert (video.float() - frames.float()).abs().mean() < 3, name
        assert [len(chunk) for chunk in iter_video(path, chunk=2)] == [2, 1]


def test_a_directory_target_with_a_timestamp_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = VideoDirectory("exp-2024-01-01T12:00", fps=10)
    path = target.log_video("pixels", torch.zeros(1, 4, 3, 16, 16, dtype=torch.uint8))
    assert path.as_posix() == "exp-2024-01-01T12:00/videos/pixels_0.mp4"
    assert read_video(path).shape == (4, 3, 16, 16)


def test_a_stale_sidecar_is_not_trusted(tmp_path):
    import imageio_ffmpeg

    path = tmp_path / "r.mp4"
    with open_video(path, fps=10) as writer:
        writer.write(torch.zeros(5, 3, 32, 48, dtype=torch.uint8))
    # Another tool rewrites r.mp4 at another size; funrec's sidecar stays behind.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi"]
    command += ["-i", "testsrc=size=160x128:rate=10", "-frames:v", "7", "-pix_fmt", "yuv420p"]
    subprocess.run([*command, str(path)], check=True)
    with pytest.warns(RuntimeWarning, match=r"sidecar .* describes a file of \d+ bytes"):
        video = read_video(path)
    assert video.shape == (7, 3, 128, 160)  # the file as it is, not cropped to 32x48


def test_a_sidecar_of_another_size_does_not_crop(tmp_path):
    path = tmp_path / "r.mp4"
    with open_video(path, fps=10) as writer:
        writer.write(torch.zeros(5, 3, 32, 48, dtype=torch.uint8))
    info = json.loads(sidecar_path(path).read_text())
    del info["bytes"]  # an older sidecar, without the byte count
    info.update(height=8, width=8)
    sidecar_path(path).write_text(json.dumps(info))
    assert read_video(path).shape == (5, 3, 32, 48)
