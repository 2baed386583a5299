"""Video writers: every format writes and reads back with its content checked."""

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

import funrec
from funrec.writers import (
    TrajectoryWriter,
    VideoDirectory,
    WriterError,
    open_video,
    partials,
    read_video,
    sidecar_path,
    write_drained,
)

# Documented bound (docs/writing.md): H.264 yuv420p at the default crf=20 reproduces
# these test frames (64x96 smooth gradients, flat colour blocks) within a mean
# absolute error of 3; lossless formats (png, pt, memmap) are exact.
MP4_MAE = 3.0


def gradient(steps: int, height: int = 64, width: int = 96) -> torch.Tensor:
    """Smooth colour gradients whose blue level changes with time: uint8 [T, 3, H, W]."""
    video = torch.empty(steps, 3, height, width)
    video[:, 0] = torch.linspace(0, 255, width)
    video[:, 1] = torch.linspace(0, 255, height)[:, None]
    video[:, 2] = torch.linspace(0, 200, steps)[:, None, None]
    return video.round().to(torch.uint8)


def blocks(steps: int, height: int = 64, width: int = 96) -> torch.Tensor:
    """Four flat 8x8 squares of distinct colours moving over white: uint8 [T, 3, H, W]."""
    colours = torch.tensor([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]])
    video = torch.full((steps, 3, height, width), 255, dtype=torch.uint8)
    for t in range(steps):
        for i, colour in enumerate(colours):
            row, col = (5 + 7 * i + t) % (height - 8), (3 + 11 * i + 2 * t) % (width - 8)
            video[t, :, row : row + 8, col : col + 8] = colour[:, None, None]
    return video


def mae(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


@pytest.mark.parametrize("make", [gradient, blocks])
def test_mp4_decodes_every_frame_within_the_bound(tmp_path, make):
    video = make(40)
    path = tmp_path / "clip.mp4"
    with open_video(path, fps=20) as writer:
        writer.write(video[:15])  # a batch
        for frame in video[15:]:  # and single frames
            writer.write(frame)
    decoded = read_video(path)
    assert decoded.shape == video.shape and decoded.dtype == torch.uint8
    assert mae(decoded, video) <= MP4_MAE
    # each decoded frame is closest to the frame written at its index (order kept)
    for t in range(0, 40, 13):
        errors = [mae(decoded[t], video[s]) for s in range(40)]
        assert min(range(40), key=errors.__getitem__) == t


def test_mp4_odd_size_is_padded_for_yuv420p_and_cropped_back(tmp_path):
    video = gradient(10, 63, 95)
    path = tmp_path / "odd.mp4"
    with open_video(path, fps=10) as writer:
        writer.write(video)
    decoded = read_video(path)
    assert decoded.shape == (10, 3, 63, 95)
    # the last row and column are not darkened by the padding
    assert mae(decoded[:, :, -1], video[:, :, -1]) <= 2 * MP4_MAE
    assert mae(decoded[..., -1], video[..., -1]) <= 2 * MP4_MAE
    info = json.loads(sidecar_path(path).read_text())
    assert (info["width"], info["height"], info["frames"]) == (95, 63, 10)


def test_mp4_settings_reach_ffmpeg(tmp_path):
    video = gradient(12)
    small, big = tmp_path / "small.mp4", tmp_path / "big.mp4"
    with open_video(small, fps=12, crf=40, preset="ultrafast") as writer:
        writer.write(video)
    with open_video(big, fps=12, crf=5) as writer:
        writer.write(video)
    assert small.stat().st_size < big.stat().st_size
    assert mae(read_video(big), video) < mae(read_video(small), video)
    info = json.loads(sidecar_path(small).read_text())
    assert (info["crf"], info["preset"], info["codec"]) == (40, "ultrafast", "libx264")


def test_encoder_threads_reach_ffmpeg_and_bad_ones_are_refused(tmp_path):
    from faults import ffmpeg_writing

    video = gradient(12)
    for threads, expected in [(None, None), (1, "1"), (0, "0"), (2, "2")]:
        path = tmp_path / f"t{threads}.mp4"
        with open_video(path, fps=12, threads=threads) as writer:  # closed even on failure
            writer.write(video[:1])
            args = ffmpeg_writing(writer.partial).cmdline()
            assert (args[args.index("-threads") + 1] if "-threads" in args else None) == expected
            writer.write(video[1:])
        assert json.loads(sidecar_path(path).read_text())["threads"] == threads
        assert mae(read_video(path), video) <= MP4_MAE
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=rf"threads={bad!r}.*int >= 0"):
            open_video(tmp_path / "bad.mp4", threads=bad)


def test_mp4_fps_is_written_into_the_stream(tmp_path):
    import imageio_ffmpeg

    path = tmp_path / "rate.mp4"
    with open_video(path, fps=24000 / 1001) as writer:
        writer.write(blocks(48))
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    assert meta["fps"] == pytest.approx(23.976, abs=0.01)


@pytest.mark.parametrize("fmt", ["png", "pt", "memmap"])
def test_lossless_formats_read_back_exactly(tmp_path, fmt):
    video = torch.randint(0, 256, (7, 3, 13, 17), dtype=torch.uint8)
    path = tmp_path / f"clip.{fmt}"
    with open_video(path, fps=5, format=fmt) as writer:
        writer.write(video[:3])
        writer.write(video[3:])
    assert torch.equal(read_video(path), video)
    info = json.loads(sidecar_path(path).read_text())
    assert info["format"] == fmt and info["frames"] == 7 and info["complete"]


def test_png_format_is_a_folder_of_numbered_frames(tmp_path):
    path = tmp_path / "frames"
    with open_video(path, format="png") as writer:
        writer.write(blocks(3))
    assert sorted(p.name for p in path.iterdir()) == ["000000.png", "000001.png", "000002.png"]


def test_pt_is_what_torchrl_csvlogger_writes(tmp_path):
    video = blocks(5)
    path = tmp_path / "clip.pt"
    with open_video(path) as writer:
        writer.write(video)
    saved = torch.load(path, weights_only=True)
    assert saved.shape == (1, 5, 3, 64, 96) and torch.equal(saved[0], video)


def test_memmap_sidecar_gives_shape_and_dtype(tmp_path):
    from tensordict import MemoryMappedTensor

    video = blocks(4)
    path = tmp_path / "clip.memmap"
    with open_video(path) as writer:
        writer.write(video)
    info = json.loads(sidecar_path(path).read_text())
    assert info["shape"] == [1, 4, 3, 64, 96] and info["dtype"] == "uint8"
    mapped = MemoryMappedTensor.from_filename(path, torch.uint8, info["shape"])
    assert torch.equal(mapped[0], video)


def test_gif_is_exact_on_few_colours_and_close_on_gradients(tmp_path):
    flat, smooth = blocks(12), gradient(12)
    for name, video in (("flat.gif", flat), ("smooth.gif", smooth)):
        with open_video(tmp_path / name, fps=10) as writer:
            writer.write(video)
    assert torch.equal(read_video(tmp_path / "flat.gif"), flat)  # <= 256 colours a frame
    decoded = read_video(tmp_path / "smooth.gif")
    assert decoded.shape == smooth.shape and mae(decoded, smooth) <= 6


def test_gif_frames_are_stored_whole_whatever_came_before(tmp_path):
    # A palette per frame: black after red is palette index 0 in both frames, so an encoder
    # diffing indices against the previous frame would leave the red there.
    video = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    video[1, 0] = 200
    video[3, :, :8] = 90
    with open_video(tmp_path / "v.gif", fps=10) as writer:
        writer.write(video)
    assert torch.equal(read_video(tmp_path / "v.gif"), video)


def test_grayscale_frames_are_repeated_to_rgb(tmp_path):
    gray = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    with open_video(tmp_path / "g.pt") as writer:
        writer.write(gray)
    assert torch.equal(read_video(tmp_path / "g.pt"), gray.expand(-1, 3, -1, -1))


def test_sidecar_records_metadata_and_version(tmp_path):
    path = tmp_path / "clip.mp4"
    with open_video(path, fps=15, metadata={"key": "pixels", "skip": 2}) as writer:
        writer.write(blocks(6))
        writer.metadata["counts"] = {"dropped": 1}
    info = json.loads(sidecar_path(path).read_text())
    assert info["frames"] == 6 and info["fps"] == 15
    assert (info["width"], info["height"], info["complete"]) == (96, 64, True)
    assert info["metadata"] == {"key": "pixels", "skip": 2, "counts": {"dropped": 1}}
    assert info["funrec_version"] == funrec.__version__


def test_every_format_writes_a_partial_and_renames_it_on_close(tmp_path):
    for name in ("a.mp4", "a.gif", "a.pt", "a.memmap", "a_png"):
        path = tmp_path / name
        writer = open_video(path, format="png" if name == "a_png" else None)
        writer.write(blocks(3))
        writer.flush()
        assert not path.exists() and not sidecar_path(path).exists()
        assert partials(path) == [writer.partial]
        assert json.loads(sidecar_path(writer.partial).read_text())["complete"] is False
        assert len(read_video(writer.partial)) <= 3  # readable while it is written
        assert writer.close() == path
        assert read_video(path).shape[0] == 3
        assert partials(path) == [] and writer.partial is None
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_close_can_name_the_video_once_it_is_finished(tmp_path):
    writer = open_video(tmp_path / "run.mp4", fps=10)
    writer.write(blocks(4))
    with pytest.raises(ValueError, match=r"close\(path=.*\.gif.*\.mp4 suffix"):
        writer.close(path=tmp_path / "run_0.gif")
    assert writer.close(path=tmp_path / "run_0.mp4") == tmp_path / "run_0.mp4"
    assert read_video(tmp_path / "run_0.mp4").shape == (4, 3, 64, 96)
    assert json.loads(sidecar_path(tmp_path / "run_0.mp4").read_text())["frames"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_0.mp4", "run_0.mp4.json"]


def test_rewriting_a_path_replaces_the_old_video(tmp_path):
    for fmt, path in (("png", tmp_path / "dir"), ("pt", tmp_path / "v.pt")):
        for steps in (5, 2):
            with open_video(path, format=fmt) as writer:
                writer.write(blocks(steps))
        assert read_video(path).shape[0] == 2


def test_no_frames_leaves_no_file(tmp_path):
    with open_video(tmp_path / "empty.mp4"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_name_the_path_shape_and_fix(tmp_path):
    path = tmp_path / "bad.mp4"
    with open_video(path) as writer:
        with pytest.raises(ValueError, match=r"got shape \(8, 8, 3\).*permute"):
            writer.write(torch.zeros(8, 8, 3, dtype=torch.uint8))
        with pytest.raises(ValueError, match=r"uint8 frames, got torch.float32.*normalize"):
            writer.write(torch.zeros(3, 8, 8))
        with pytest.raises(TypeError, match=r"torch\.Tensor"):
            writer.write([[0]])
        writer.write(blocks(2, 16, 16))
    assert read_video(path).shape == (2, 3, 16, 16)


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"suffix '.avi'.*format="):
        open_video(tmp_path / "x.avi")
    with pytest.raises(ValueError, match="format='webm'"):
        open_video(tmp_path / "x", format="webm")


def test_write_after_close_is_an_error(tmp_path):
    writer = open_video(tmp_path / "c.pt")
    writer.write(blocks(1))
    writer.close()
    writer.close()  # closing twice is fine
    with pytest.raises(WriterError, match="closed"):
        writer.write(blocks(1))


# -- the directory target (TorchRL CSVLogger layout)


@pytest.mark.parametrize("fmt", ["mp4", "pt", "memmap"])
def test_video_directory_mirrors_csvlogger_layout(tmp_path, fmt):
    target = VideoDirectory(tmp_path, format=fmt, fps=10)
    video = blocks(6)
    first = target.log_video("pixels", video[None])  # TorchRL's [1, T, C, H, W]
    second = target.log_video("pixels", video)
    named = target.log_video("pixels", video, step=100)
    assert [p.relative_to(tmp_path).as_posix() for p in (first, second, named)] == [
        f"videos/pixels_0.{fmt}",
        f"videos/pixels_1.{fmt}",
        f"videos/pixels_100.{fmt}",
    ]
    decoded = read_video(first)
    assert decoded.shape == video.shape
    assert mae(decoded, video) <= (MP4_MAE if fmt == "mp4" else 0)


def test_video_directory_passes_kwargs_and_flattens_clips(tmp_path):
    target = VideoDirectory(tmp_path, crf=30)
    path = target.log_video("eval", torch.stack([blocks(3), blocks(3)]), fps=6)
    info = json.loads(sidecar_path(path).read_text())
    assert (info["fps"], info["crf"], info["frames"]) == (6, 30, 6)
    with pytest.raises(ValueError, match=r"got \(3, 64, 96\)"):
        target.log_video("eval", blocks(1)[0])
    # CSVLogger's spellings of the encoder settings
    path = target.log_video(
        "eval",
        blocks(3),
        video_codec="libx264",
        options={"crf": "35", "preset": "ultrafast", "threads": "2"},
    )
    info = json.loads(sidecar_path(path).read_text())
    assert (info["codec"], info["crf"], info["preset"]) == ("libx264", 35, "ultrafast")
    assert info["threads"] == 2
    with pytest.raises(ValueError, match=r"options \['tune'\] cannot be passed"):
        target.log_video("eval", blocks(3), options={"tune": "film"})


def test_video_directory_reads_the_same_as_torchrl_csvlogger_pt(tmp_path):
    from torchrl.record.loggers import CSVLogger

    video = blocks(4)[None]
    logger = CSVLogger("exp", log_dir=str(tmp_path / "torchrl"), video_format="pt")
    logger.log_video("pixels", video)
    ours = VideoDirectory(tmp_path / "funrec" / "exp", format="pt").log_video("pixels", video)
    theirs = tmp_path / "torchrl" / "exp" / "videos" / "pixels_0.pt"
    assert torch.equal(read_video(theirs), read_video(ours))


# -- write_drained: the seam between the core and the writers


def stamped_steps(count: int, start: int = 0) -> list[TensorDict]:
    steps = []
    for i in range(start, start + count):
        frame = torch.zeros(16, 16, 3, dtype=torch.uint8)
        frame[..., 0] = i
        steps.append(TensorDict({"pixels": frame, "obs": torch.full((2,), float(i))}))
    return steps


def test_write_drained_streams_frames_and_records_counts(tmp_path):
    rec = funrec.every(2, funrec.frames("pixels"))
    state = rec.init()
    with open_video(tmp_path / "v.pt", metadata={"key": "pixels"}) as writer:
        for td in stamped_steps(10):
            state = write_drained(rec.step(state, td), writer)
            assert len(funrec.video(state)) == 0  # memory does not grow
    written = read_video(tmp_path / "v.pt")
    assert written[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]
    meta = json.loads(sidecar_path(tmp_path / "v.pt").read_text())["metadata"]
    assert meta["key"] == "pixels"
    assert meta["counts"] == {"seen": 10, "recorded": 5, "skipped": 5, "dropped": 0}
    assert meta["layout"]["order"] == "HWC" and meta["layout"]["height"] == 16


def test_write_drained_tiles_batched_frames(tmp_path):
    rec = funrec.frames("pixels")
    state = rec.init()
    frames = torch.stack([torch.full((8, 8, 3), 10 * (b + 1), dtype=torch.uint8) for b in range(3)])
    state = rec.step(state, TensorDict({"pixels": frames}, [3]))
    with open_video(tmp_path / "grid.pt") as writer:
        write_drained(state, writer)
    grid = read_video(tmp_path / "grid.pt")
    assert grid.shape == (1, 3, 16, 16)  # 3 envs on a 2x2 grid, the 4th cell black
    assert [int(grid[0, 0, r, c]) for r, c in ((0, 0), (0, 8), (8, 0), (8, 8))] == [10, 20, 30, 0]


def test_write_drained_named_state_keeps_items_without_a_writer(tmp_path):
    from funrec.writers import TrajectoryWriter, load

    rec = funrec.named(video=funrec.frames("pixels"), traj=funrec.tensordicts())
    state = funrec.fold(rec, stamped_steps(4))
    with (
        open_video(tmp_path / "v.pt") as video,
        TrajectoryWriter(tmp_path / "traj", done_key=None) as traj,
    ):
        state = write_drained(state, {"video": video})
        assert len(funrec.trajectory(state["traj"])) == 4  # untouched
        state = write_drained(state, {"traj": traj})
    assert funrec.trajectory(state["traj"]) is None
    assert read_video(tmp_path / "v.pt")[:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert load(tmp_path / "traj")["obs"][:, 0].tolist() == [0, 1, 2, 3]
    with pytest.raises(KeyError, match="no recorder named"):
        write_drained(state, {"videos": video})
    with pytest.raises(TypeError, match="dict"):
        write_drained(state, video)
    state = funrec.fold(rec, stamped_steps(2), state)
    with pytest.raises(TypeError, match="TensorDict items, which VideoWriter cannot write"):
        write_drained(state, {"traj": open_video(tmp_path / "x.mp4")})
    assert len(funrec.trajectory(state["traj"])) == 2  # kept


def test_write_drained_failure_leaves_the_state_whole(tmp_path):
    rec = funrec.frames("pixels")
    state = funrec.fold(rec, stamped_steps(3))
    writer = open_video(tmp_path / "v.pt")
    writer.write(torch.zeros(3, 5, 5, dtype=torch.uint8))  # fixes another frame size
    with pytest.raises(ValueError, match="frame size changed"):
        write_drained(state, writer)
    assert len(funrec.video(state)) == 3  # the caller's state still holds every frame
    with open_video(tmp_path / "retry.pt") as retry:
        state = write_drained(state, retry)
    assert read_video(tmp_path / "retry.pt")[:, 0, 0, 0].tolist() == [0, 1, 2]


def test_torchrl_video_recorder_logs_into_a_video_directory(tmp_path):
    from torchrl.record import VideoRecorder

    recorder = VideoRecorder(logger=VideoDirectory(tmp_path, fps=10), tag="pixels")
    for t in range(6):
        recorder(TensorDict({"pixels": torch.full((16, 16, 3), 40 * t, dtype=torch.uint8)}))
    recorder.dump()
    decoded = read_video(tmp_path / "videos" / "pixels_0.mp4")
    assert decoded.shape == (6, 3, 16, 16)
    levels = decoded[:, :, 4:12, 4:12].float().mean(dim=(1, 2, 3))
    assert (levels - 40 * torch.arange(6)).abs().max() < 3


@pytest.mark.parametrize("fmt", ["mp4", "gif", "png"])
@pytest.mark.parametrize("size", [(1, 1), (1, 2), (2, 1), (3, 5), (17, 31)])
def test_tiny_and_odd_sizes_round_trip(tmp_path, fmt, size):
    colours = torch.tensor([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=torch.uint8)
    video = colours[:, :, None, None].expand(3, 3, *size).contiguous()  # one flat colour a frame
    path = tmp_path / f"clip.{fmt}"
    with open_video(path, fps=5, format=fmt) as writer:
        writer.write(video)
    decoded = read_video(path)
    assert decoded.shape == video.shape
    assert mae(decoded, video) <= (MP4_MAE if fmt == "mp4" else 0)


@given(
    frames=st.integers(1, 12),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 12), max_size=4),
    fmt=st.sampled_from(["pt", "memmap"]),
    seed=st.integers(0, 2**32 - 1),
)
@settings(deadline=None)
def test_lossless_formats_are_exact_however_frames_are_handed_over(
    tmp_path_factory, frames, height, width, cuts, fmt, seed
):
    generator = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (frames, 3, height, width), generator=generator).to(torch.uint8)
    path = tmp_path_factory.mktemp("v") / f"clip.{fmt}"
    bounds = sorted({0, frames, *(min(c, frames) for c in cuts)})
    with open_video(path) as writer:
        for start, stop in itertools.pairwise(bounds):
            writer.write(video[start] if stop - start == 1 else video[start:stop])
    assert torch.equal(read_video(path), video)
    assert json.loads(sidecar_path(path).read_text())["frames"] == frames


@pytest.mark.parametrize("fmt", ["pt", "memmap", "png", "mp4"])
def test_batches_of_channels_last_views_are_written_whole_and_in_order(tmp_path, fmt):
    # As funrec_jax streaming hands frames over: [K, 3, H, W] views of one HWC buffer, which
    # the caller overwrites as soon as write() returns. Sizes repeat (blocks are reused), change
    # (a pooled block of another size is dropped), and come one frame at a time.
    from faults import assert_frames_of

    sizes = [16, 16, 5, 16, 1, 1, 40, 16, 16, 3]
    height, width = 37, 51  # odd: mp4 pads the last row and column
    if fmt == "mp4":
        video = blocks(sum(sizes), height, width)
    else:
        video = torch.randint(0, 256, (sum(sizes), 3, height, width), dtype=torch.uint8)
    ring = torch.empty(max(sizes), height, width, 3, dtype=torch.uint8)
    path = tmp_path / ("frames" if fmt == "png" else f"clip.{fmt}")
    start = 0
    with open_video(path, fps=10, format=fmt) as writer:
        for i, k in enumerate(sizes):
            ring[:k].copy_(video[start : start + k].permute(0, 2, 3, 1))
            writer.write(ring[:k].permute(0, 3, 1, 2))
            ring.fill_(i)  # the caller reuses its buffer at once
            start += k
            if i % 2:
                writer.flush()  # the written blocks go back to the pool
        assert writer.frames == len(video)
    decoded = read_video(path)
    assert decoded.shape == video.shape
    if fmt == "mp4":
        assert mae(decoded, video) <= MP4_MAE
        assert_frames_of(decoded, video)
    else:
        assert torch.equal(decoded, video)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["mp4", "memmap"])
def test_streaming_memory_does_not_grow_with_the_video(tmp_path, fmt):
    import os

    import psutil

    steps = 3000 if os.environ.get("FUNREC_FULL") == "1" else 400  # 100 KB a frame
    process = psutil.Process()
    rec = funrec.frames("pixels")
    state = rec.init()
    frame = torch.zeros(210, 160, 3, dtype=torch.uint8)
    with open_video(tmp_path / f"long.{fmt}", fps=30) as writer:
        for t in range(steps):
            frame[..., 0] = t % 256  # each step a new frame, as from an env
            state = rec.step(state, TensorDict({"pixels": frame}))
            state = write_drained(state, writer)
            if t == 50:  # ffmpeg, buffers and allocator warmed up
                baseline = process.memory_info().rss
        grown = process.memory_info().rss - baseline
    held = steps * frame.numel()
    assert grown < held / 3, f"RSS grew {grown >> 20} MB for {held >> 20} MB of frames"
    assert len(read_video(tmp_path / f"long.{fmt}")) == steps


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import stat

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    (tmp_path / "plain").write_bytes(b"")
    (tmp_path / "plain_dir").mkdir()
    with open_video(tmp_path / "v.pt") as writer:
        writer.write(blocks(1))
    with open_video(tmp_path / "frames", format="png") as writer:
        writer.write(blocks(1))
    # the umask decides, not tempfile's private 0600/0700
    assert mode(tmp_path / "v.pt") == mode(tmp_path / "plain")
    assert mode(sidecar_path(tmp_path / "v.pt")) == mode(tmp_path / "plain")
    assert mode(tmp_path / "frames") == mode(tmp_path / "plain_dir")


# -- bad arguments fail at construction, naming the argument


@pytest.mark.parametrize("fps", [float("inf"), float("nan"), 0, -5, 1e-9, 1e6, "30", None, True])
def test_a_bad_fps_is_refused_at_construction_by_every_writer(tmp_path, fps):
    with pytest.raises(ValueError, match=r"fps=.*frame rate|fps=.*pass a number"):
        open_video(tmp_path / "v.mp4", fps=fps)
    with pytest.raises(ValueError, match="fps="):
        VideoDirectory(tmp_path / "exp", fps=fps)
    with pytest.raises(ValueError, match="fps="):
        VideoDirectory(tmp_path / "exp").log_video("x", blocks(2), fps=fps)
    with pytest.raises(ValueError, match="fps="):
        TrajectoryWriter(tmp_path / "traj", fps=fps)
    assert not (tmp_path / "exp").exists() and not (tmp_path / "traj").exists()


@pytest.mark.parametrize(
    "fps", [12, 12.0, np.float32(12), np.int64(12), torch.tensor(12), torch.tensor(12.0)]
)
def test_fps_takes_any_real_scalar_alike(tmp_path, fps):
    with open_video(tmp_path / "v.mp4", fps=fps) as writer:
        writer.write(blocks(2))
    assert json.loads(sidecar_path(tmp_path / "v.mp4").read_text())["fps"] == 12.0


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("first_chunk", 0),
        ("first_chunk", -1),
        ("first_chunk", 2.5),
        ("max_chunk_bytes", 0),
        ("commit_steps", 0),
        ("commit_seconds", 0),
        ("commit_seconds", float("inf")),
        ("video_layout", "BGR"),
    ],
)
def test_a_bad_trajectory_writer_argument_is_refused_at_construction(tmp_path, argument, value):
    with pytest.raises(ValueError, match=rf"{argument}={value!r}"):
        TrajectoryWriter(tmp_path / "traj", **{argument: value})
    assert not (tmp_path / "traj").exists()
