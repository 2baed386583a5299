"""Scenario 4: funrec's streaming mp4 writer against raw ``imageio_ffmpeg.write_frames``.

Both encode the same real CartPole frames (400x600) with the same ffmpeg
settings (those ``funrec.writers.video._FfmpegSink`` passes): libx264, yuv420p,
crf 20, one encoder thread (funrec's default), a keyframe every 30 frames,
fragmented mp4 flushed packet by packet, at every x264 preset from ultrafast
to medium. Each receives frames one at a time in its native form: funrec's
writer the uint8 ``[3, H, W]`` tensors that ``funrec.drain`` hands out after a
``frames()`` fold over the rendered frames, imageio the ``[H, W, 3]`` arrays the
renderer gives. The time runs from opening the file to the end of ``close()``
(ffmpeg has exited, the file is complete).

The same run measures what the encoder settings cost and give: funrec's writer
at every preset with 1, 2 and automatic encoder threads, reporting ffmpeg's CPU
time per frame (its user + system time, from ``RUSAGE_CHILDREN``), the file size
and the PSNR of the decoded video against the frames written (ffmpeg's ``psnr``
filter, in RGB, so chroma subsampling counts).
"""

from __future__ import annotations

import re
import resource
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
from tensordict import TensorDict

import funrec
from benchmarks.harness import (
    Config,
    Section,
    Stats,
    cartpole_frames,
    interleave,
    ratios,
    table,
)
from funrec.writers import open_video

NAME = "writer"
FPS = 30
CRF = 20
FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
THREADS = (1, 2, 0)  # encoder threads; 0: the encoder decides (libx264: 1.5 per core)
DEFAULT_THREADS = 1  # open_video's default


def funrec_writer(chw: Sequence[torch.Tensor], path: Path, preset: str, threads: int) -> float:
    """Frames per second through ``funrec.writers.open_video``, one frame per ``write``."""
    start = time.perf_counter()
    with open_video(path, fps=FPS, crf=CRF, preset=preset, threads=threads) as writer:
        for frame in chw:
            writer.write(frame)
    return len(chw) / (time.perf_counter() - start)


def raw_imageio(hwc: np.ndarray, path: Path, preset: str, threads: int) -> float:
    """Frames per second through ``imageio_ffmpeg.write_frames`` with funrec's settings."""
    start = time.perf_counter()
    params = ["-crf", str(CRF), "-preset", preset, "-threads", str(threads), "-g", str(FPS)]
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


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def psnr(video: Path, reference: Path, size: tuple[int, int]) -> float:
    """Average PSNR (dB) of ``video`` against raw RGB frames of ``size`` (H, W), in RGB."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(video)]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[1]}x{size[0]}"]
    command += ["-framerate", str(FPS), "-i", str(reference)]
    command += ["-lavfi", "[0:v]format=rgb24[a];[1:v]format=rgb24[b];[a][b]psnr"]
    command += ["-f", "null", "-"]
    log = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    found = re.search(r"average:(\S+)", log)
    if found is None:
        raise RuntimeError(f"no PSNR in ffmpeg's output: {log[-500:]}")
    return float(found.group(1))


def run(cfg: Config) -> Section:
    """Measures both writers at every preset; target: funrec >= 0.95x raw imageio-ffmpeg."""
    hwc = cartpole_frames(cfg.size(300, 10))
    steps = [TensorDict({"pixels": torch.from_numpy(frame)}) for frame in hwc]
    chw, _ = funrec.drain(funrec.fold(funrec.frames("pixels"), steps))
    out = cfg.workdir / "writer"
    out.mkdir(parents=True, exist_ok=True)
    cpu: dict[str, list[float]] = {}

    def contender(
        write: Callable[..., float], frames: object, preset: str, threads: int
    ) -> Callable[[], float]:
        name = f"{write.__name__}-{preset}-{threads}"
        cpu[name] = []

        def measure() -> float:
            before = children_cpu()
            fps = write(frames, out / f"{name}.mp4", preset, threads)
            cpu[name].append((children_cpu() - before) / len(hwc))
            return fps

        return measure

    contenders = {}
    for preset in PRESETS:
        contenders[f"imageio {preset}"] = contender(raw_imageio, hwc, preset, DEFAULT_THREADS)
        for threads in THREADS:
            contenders[f"funrec {preset} {threads}"] = contender(
                funrec_writer, chw, preset, threads
            )
    m = interleave(contenders, cfg.repeats)

    rows, misses = [], []
    for preset in PRESETS:
        funrec_fps = m[f"funrec {preset} {DEFAULT_THREADS}"]
        raw_fps = m[f"imageio {preset}"]
        ratio = ratios(funrec_fps, raw_fps)
        if ratio.median < 0.95:
            misses.append(f"{preset}: {ratio.median:.2f}x")
        rows.append(
            [preset, Stats.of(funrec_fps).show(), Stats.of(raw_fps).show(), ratio.show(digits=2)]
        )

    reference = out / "frames.rgb"
    reference.write_bytes(hwc.tobytes())
    costs = []
    for preset in PRESETS:
        for threads in THREADS:
            name = f"funrec_writer-{preset}-{threads}"
            video = out / f"{name}.mp4"
            costs.append(
                [
                    preset,
                    "auto" if threads == 0 else str(threads),
                    Stats.of(cpu[name][1:]).show(1e3, 2),
                    Stats.of(m[f"funrec {preset} {threads}"]).show(),
                    f"{video.stat().st_size / len(hwc) / 1024:.2f}",
                    f"{psnr(video, reference, hwc.shape[1:3]):.2f}",
                ]
            )
    reference.unlink()
    threads_note = "one encoder thread" if DEFAULT_THREADS == 1 else f"{DEFAULT_THREADS} threads"
    return Section(
        title="4. mp4 writer throughput",
        target="funrec's mp4 writer >= 0.95x raw `imageio_ffmpeg.write_frames`, same settings, "
        "at every x264 preset.",
        verdict="not met: " + "; ".join(misses) if misses else "met at every preset",
        headers=["x264 preset", "funrec frames/s", "imageio-ffmpeg frames/s", "funrec / imageio"],
        rows=rows,
        notes=[
            f"{len(hwc)} real CartPole-v1 frames (400x600), libx264 crf {CRF}, {threads_note} "
            f"(funrec's default, `-threads {DEFAULT_THREADS}` for both), yuv420p, -g {FPS}, "
            f"fragmented mp4 with -flush_packets 1, {FPS} fps; from open to a finished file. "
            "funrec's writer receives the `[3, H, W]` frames `funrec.drain` hands out "
            "(channels-last views of the rendered HWC bytes), copies each into a buffer of "
            "its own (the caller may reuse its memory) and returns; its thread pipes the "
            "buffers to ffmpeg. imageio copies each HWC array with `tobytes()` and writes it "
            "in the caller's thread. Both feed the same ffmpeg binary the same arguments, in "
            "its own process.",
            "What the encoder settings cost and give, measured in the same run (funrec's "
            "writer; ffmpeg's CPU time is its user + system time per frame, for conversion "
            "to yuv420p, encoding and muxing; PSNR of the decoded mp4 against the frames "
            "written, in RGB, averaged over the frames):",
            table(
                [
                    "x264 preset",
                    "encoder threads",
                    "ffmpeg CPU ms/frame",
                    "funrec frames/s",
                    "KiB/frame",
                    "PSNR dB",
                ],
                costs,
            ),
        ],
    )
