"""Scenario 4: funrec's streaming mp4 writer against raw ``imageio_ffmpeg.write_frames``.

Both encode the same real CartPole frames (400x600) with the same ffmpeg
settings (those ``funrec.writers.video._FfmpegSink`` passes): libx264, yuv420p,
crf 20, a keyframe every 30 frames, fragmented mp4 flushed packet by packet, at
funrec's default preset (veryfast) and at ultrafast. Each receives frames one at
a time in its native form: funrec's writer the uint8 ``[3, H, W]`` tensors
that ``funrec.drain`` hands out after a ``frames()`` fold over the rendered
frames, imageio the ``[H, W, 3]`` arrays the renderer gives. The time runs
from opening the file to the end of ``close()`` (ffmpeg has exited, the file
is complete).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
from tensordict import TensorDict

import funrec
from benchmarks.harness import Config, Section, Stats, cartpole_frames, interleave, ratios
from funrec.writers import open_video

NAME = "writer"
FPS = 30
CRF = 20
FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"
PRESETS = ("veryfast", "ultrafast")


def funrec_writer(chw: Sequence[torch.Tensor], path: Path, preset: str) -> float:
    """Frames per second through ``funrec.writers.open_video``, one frame per ``write``."""
    start = time.perf_counter()
    with open_video(path, fps=FPS, crf=CRF, preset=preset) as writer:
        for frame in chw:
            writer.write(frame)
    return len(chw) / (time.perf_counter() - start)


def raw_imageio(hwc: np.ndarray, path: Path, preset: str) -> float:
    """Frames per second through ``imageio_ffmpeg.write_frames`` with funrec's settings."""
    start = time.perf_counter()
    params = ["-crf", str(CRF), "-preset", preset, "-g", str(FPS)]
    params += ["-movflags", FRAGMENTED, "-flush_packets", "1", "-f", "mp4"]
    gen = imageio_ffmpeg.write_frames(
        str(path),
        (hwc.shape[2], hwc.shape[1]),
        fps=FPS,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=params,
    )
    gen.send(None)
    for frame in hwc:
        gen.send(frame)
    gen.close()
    return len(hwc) / (time.perf_counter() - start)


def run(cfg: Config) -> Section:
    """Measures both writers at both presets; target: funrec >= 0.95x raw imageio-ffmpeg."""
    hwc = cartpole_frames(cfg.size(300, 10))
    steps = [TensorDict({"pixels": torch.from_numpy(frame)}) for frame in hwc]
    chw, _ = funrec.drain(funrec.fold(funrec.frames("pixels"), steps))
    out = cfg.workdir / "writer"

    def contender(write: Callable[..., float], frames: object, preset: str) -> Callable[[], float]:
        return lambda: write(frames, out / f"{write.__name__}-{preset}.mp4", preset)

    contenders = {}
    for preset in PRESETS:
        contenders[f"funrec {preset}"] = contender(funrec_writer, chw, preset)
        contenders[f"imageio {preset}"] = contender(raw_imageio, hwc, preset)
    m = interleave(contenders, cfg.repeats)
    rows, misses = [], []
    for preset in PRESETS:
        funrec_fps, raw_fps = m[f"funrec {preset}"], m[f"imageio {preset}"]
        ratio = ratios(funrec_fps, raw_fps)
        if ratio.median < 0.95:
            misses.append(f"{preset}: {ratio.median:.2f}x")
        rows.append(
            [preset, Stats.of(funrec_fps).show(), Stats.of(raw_fps).show(), ratio.show(digits=2)]
        )
    return Section(
        title="4. mp4 writer throughput",
        target="funrec's mp4 writer >= 0.95x raw `imageio_ffmpeg.write_frames`, same settings.",
        verdict="not met: " + "; ".join(misses) if misses else "met at both presets",
        headers=["x264 preset", "funrec frames/s", "imageio-ffmpeg frames/s", "funrec / imageio"],
        rows=rows,
        notes=[
            f"{len(hwc)} real CartPole-v1 frames (400x600), libx264 crf {CRF}, yuv420p, "
            f"-g {FPS}, fragmented mp4 with -flush_packets 1, {FPS} fps; from open to a "
            "finished file. funrec's writer receives the `[3, H, W]` frames `funrec.drain` "
            "hands out (channels-last views of the rendered HWC bytes) and pipes their "
            "bytes as they are (`frame.permute(1, 2, 0)` is contiguous: no copy); imageio "
            "writes the HWC arrays as rendered. Both feed the same ffmpeg binary the same "
            "arguments, in its own process; what is left between them is Python work per "
            "frame and the machine's noise.",
        ],
    )
