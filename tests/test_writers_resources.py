"""Resources: read_video's memory, ffmpeg started without forking Python (JAX's warning)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from faults import ROOT

from funrec.writers import iter_video, open_video

FULL = os.environ.get("FUNREC_FULL") == "1"

MEASURE = textwrap.dedent(
    """
    import sys
    from funrec.writers import read_video

    def peak():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) << 10 for l in status if l.startswith("VmHWM"))

    def now():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) << 10 for l in status if l.startswith("VmRSS"))

    read_video(sys.argv[1].replace("long", "short"))  # warm up: imports, ffmpeg's first start
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak starts again from here
    before = now()
    video = read_video(sys.argv[1])
    print(video.numel(), peak() - before, tuple(video.shape))
    """
)


@pytest.mark.slow
def test_read_video_needs_the_result_plus_one_chunk(tmp_path):
    import imageio_ffmpeg

    frames, size = (5000, "600x400") if FULL else (600, "320x240")
    for name, count in (("long.mp4", frames), ("short.mp4", 2)):
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i"]
        command += [f"testsrc=size={size}:rate=30", "-frames:v", str(count)]
        command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        subprocess.run([*command, str(tmp_path / name)], check=True)  # a plain mp4 of another tool
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "long.mp4")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split(maxsplit=2)
    result, grown = int(out[0]), int(out[1])
    width, height = map(int, size.split("x"))
    assert out[2].strip() == str((frames, 3, height, width))
    chunk = 64 * 3 * width * height
    assert grown <= result + chunk + (32 << 20), f"{grown >> 20} MiB for a {result >> 20} MiB video"


def test_iter_video_reads_a_video_in_fresh_chunks(tmp_path):
    video = torch.randint(0, 256, (10, 3, 8, 12), dtype=torch.uint8)
    with open_video(tmp_path / "frames", format="png") as writer:
        writer.write(video)
    chunks = list(iter_video(tmp_path / "frames", chunk=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert torch.equal(torch.cat(chunks), video)
    assert chunks[0].data_ptr() != chunks[1].data_ptr() and chunks[0].is_contiguous()
    with pytest.raises(ValueError, match="chunk=0"):
        next(iter_video(tmp_path / "frames", chunk=0))


JAX_CHILD = textwrap.dedent(
    """
    import sys
    import jax.numpy as jnp
    import torch
    from funrec.writers import open_video, read_video

    jnp.zeros(3).block_until_ready()  # JAX's threads are running
    with open_video(sys.argv[1], fps=10) as writer:
        writer.write(torch.zeros(3, 3, 16, 16, dtype=torch.uint8))
    assert read_video(sys.argv[1]).shape == (3, 3, 16, 16)
    print("done")
    """
)


def test_ffmpeg_starts_without_forking_python_when_jax_is_loaded(tmp_path):
    pytest.importorskip("jax")
    child = subprocess.run(
        [sys.executable, "-W", "always", "-c", JAX_CHILD, str(tmp_path / "v.mp4")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout.strip() == "done", child.stderr
    assert "fork" not in child.stderr  # JAX warns on every os.fork() of its process
