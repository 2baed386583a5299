"""Ctrl-C while a frame is in the pipe: a real SIGINT to a real process whose writer is blocked
on a full pipe (ffmpeg stopped). The file must hold whole frames only, each of its own colour,
and the interrupted write() took all of its frames or none.
"""

import signal
import subprocess
import textwrap

import psutil
import pytest
import torch
from faults import ffmpeg_writing, pipe_is_full, run_python, wait_for

from funrec.writers import partials, read_video

COLOURS = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]])

CHILD = textwrap.dedent(
    """
    import sys, torch
    from funrec.writers import open_video

    COLOURS = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]])

    def frame(i):  # 240x320: 230 KB, more than a pipe holds
        return COLOURS[i % 4].to(torch.uint8)[:, None, None].expand(3, 240, 320).clone()

    per_write = int(sys.argv[3])  # > 1: a [K, 3, H, W] view of HWC frames, as funrec_jax hands over

    def frames(i):
        if per_write == 1:
            return frame(i)
        batch = torch.stack([frame(j).permute(1, 2, 0) for j in range(i, i + per_write)])
        return batch.permute(0, 3, 1, 2)

    writer = open_video(sys.argv[1], fps=10, format=sys.argv[2])
    writer.write(frames(0))
    writer.flush()
    print("ready", flush=True)
    sys.stdin.readline()  # ffmpeg is stopped now
    i = per_write
    try:
        while True:
            writer.write(frames(i))
            i += per_write
    except KeyboardInterrupt:
        pass
    taken = writer.frames  # the interrupted call took all of its frames or none
    print("interrupted", taken, flush=True)
    sys.stdin.readline()  # ffmpeg runs again
    for j in range(taken, taken + 5 * per_write, per_write):
        writer.write(frames(j))
    writer.close()
    print("closed", writer.frames, flush=True)
    """
)


@pytest.mark.parametrize("per_write", [1, 8])
@pytest.mark.parametrize("format", ["mp4", "png"])
def test_ctrl_c_in_a_blocked_write_leaves_whole_frames_only(tmp_path, format, per_write):
    path = tmp_path / ("v.mp4" if format == "mp4" else "frames")
    child = run_python(CHILD, path, format, per_write, stdin=subprocess.PIPE)
    try:
        assert child.stdout.readline().split() == ["ready"]
        [partial] = partials(path)
        ffmpeg = ffmpeg_writing(partial, psutil.Process(child.pid))
        ffmpeg.suspend()
        wait_for(lambda: ffmpeg.status() == psutil.STATUS_STOPPED, "ffmpeg to stop")
        child.stdin.write("go\n")
        child.stdin.flush()
        # The pipe fills in the middle of a frame: the writer is blocked on it.
        wait_for(lambda: pipe_is_full(ffmpeg), "the writer to block on a full pipe")
        child.send_signal(signal.SIGINT)
        word, taken = child.stdout.readline().split()
        assert word == "interrupted"
        assert int(taken) % per_write == 0  # all of a write's frames or none
        ffmpeg.resume()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["closed", str(int(taken) + 5 * per_write)]
        assert child.wait() == 0
    finally:
        child.kill()
    video = read_video(path)
    assert len(video) == int(taken) + 5 * per_write
    # Every frame whole, in its own colour: a torn frame would shift the channels of every
    # later one (red becoming green).
    colours = video.float().mean(dim=(2, 3))
    expected = COLOURS[torch.arange(len(video)) % 4].float()
    assert (colours - expected).abs().max() < 8
