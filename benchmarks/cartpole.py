"""Scenario 5: end to end, CartPole-v1 through TorchRL, rendering with and without recording.

Four environments built the same way, ``TransformedEnv(GymEnv("CartPole-v1",
render_mode="rgb_array"), torchrl.record.PixelRenderTransform())``, then:

* render only: nothing more;
* funrec: ``funrec_torchrl.VideoRecorder(CSVLogger(video_format="mp4"))``
  appended: every frame streams to ffmpeg during the rollout, ``dump()``
  finishes the mp4;
* TorchRL: ``torchrl.record.VideoRecorder(CSVLogger(video_format="pt"), skip=1)``
  appended (skip=1 so it keeps the same frames; its default with a parent env is
  2), ``dump()`` stacks and saves them (mp4 would need torchcodec, absent here);
* funrec without a logger: the adapter only records (holds the frames, ``dump()``
  discards them), which separates the cost of recording from that of encoding.

Timed: ``env.rollout(steps, break_when_any_done=False)`` (random actions,
resets when an episode ends) plus ``env.transform.dump()``; building the env is
not timed. All use TorchRL's PixelRenderTransform, so only recording differs.
The same run measures ALE Pong (``ALE/Pong-v5``, 210x160 frames) rendered
only and recorded to mp4 by funrec, and ffmpeg's CPU time per frame (its user +
system time, from ``RUSAGE_CHILDREN``) beside each mp4 row.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import Config, Section, Stats, interleave, ratios

NAME = "cartpole"
TARGET = 1.10
WAYS = (
    "render only",
    "funrec VideoRecorder (mp4, streaming)",
    "TorchRL VideoRecorder (pt)",
    "funrec VideoRecorder (logger=None: held, no encoding)",
)
PONG = ("ALE Pong: render only", "ALE Pong: funrec VideoRecorder (mp4, streaming)")


def rollout(way: str, steps: int, folder: Path) -> float:
    """Builds the env for ``way``, then times its rollout and dump; returns seconds."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import funrec_torchrl
    from torchrl.envs import GymEnv, TransformedEnv
    from torchrl.record import CSVLogger, PixelRenderTransform, VideoRecorder

    name = "ALE/Pong-v5" if way in PONG else "CartPole-v1"
    env = TransformedEnv(GymEnv(name, render_mode="rgb_array"), PixelRenderTransform())
    if way in (WAYS[1], PONG[1]):
        logger = CSVLogger("funrec", log_dir=str(folder), video_format="mp4")
        env.append_transform(funrec_torchrl.VideoRecorder(logger, "cartpole"))
    elif way == WAYS[2]:
        logger = CSVLogger("torchrl", log_dir=str(folder), video_format="pt")
        env.append_transform(VideoRecorder(logger, "cartpole", skip=1))
    elif way == WAYS[3]:
        env.append_transform(funrec_torchrl.VideoRecorder(None, "cartpole"))
    env.set_seed(0)
    start = time.perf_counter()
    env.rollout(steps, break_when_any_done=False)
    env.transform.dump()
    seconds = time.perf_counter() - start
    env.close()
    return seconds


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far (ffmpeg)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cfg: Config) -> Section:
    """Times every way side by side; target: funrec (mp4) <= 1.10x render only."""
    steps = cfg.size(500, 20)
    encoder: dict[str, list[float]] = {way: [] for way in (*WAYS, *PONG)}

    def contender(way: str) -> Callable[[], float]:
        def measure() -> float:
            before = children_cpu()
            seconds = rollout(way, steps, cfg.workdir / "cartpole")
            encoder[way].append((children_cpu() - before) / (steps + 1))
            return seconds

        return measure

    m = interleave({way: contender(way) for way in (*WAYS, *PONG)}, cfg.repeats)

    def row(way: str, base: str) -> list[str]:
        cpu = Stats.of(encoder[way][1:]).show(1e3, 2) if "mp4" in way else "-"
        ratio = ratios(m[way], m[base]).show(digits=2)
        return [way, Stats.of(m[way]).show(1e3 / steps, 2), ratio, cpu]

    rows = [row(way, WAYS[0]) for way in WAYS] + [row(way, PONG[0]) for way in PONG]
    render = m[WAYS[0]]
    funrec_ratio = ratios(m[WAYS[1]], render).median
    torchrl_ratio = ratios(m[WAYS[2]], render).median
    held_ratio = ratios(m[WAYS[3]], render).median
    pong_ratio = ratios(m[PONG[1]], m[PONG[0]]).median
    encode_ms = statistics.median(encoder[WAYS[1]][1:]) * 1e3
    step_ms, mp4_ms, held_ms = (
        statistics.median(m[way]) * 1e3 / steps for way in (WAYS[0], WAYS[1], WAYS[3])
    )
    extra_ms = mp4_ms - held_ms
    verdict = (
        f"{'met' if funrec_ratio <= TARGET else 'not met'}: funrec recording to mp4 "
        f"{funrec_ratio:.2f}x render only (target {TARGET}x); funrec recording alone "
        f"(no encoding) {held_ratio:.2f}x; TorchRL (pt, no encoding) {torchrl_ratio:.2f}x; "
        f"ALE Pong recorded to mp4 {pong_ratio:.2f}x its render only"
    )
    return Section(
        title=f"5. End to end: CartPole-v1, {steps} steps, render + record",
        target=f"render + record to mp4 (streaming) <= {TARGET}x render only; TorchRL's "
        "VideoRecorder + dump on the same run for comparison.",
        verdict=verdict,
        headers=[
            "way",
            "ms/step (rollout + dump)",
            "time / render only",
            "ffmpeg CPU ms/frame",
        ],
        rows=rows,
        notes=[
            f"{steps} steps ({steps + 1} frames of 400x600 with the reset frame), random "
            "actions. funrec's mp4 is encoded by ffmpeg (open_video's defaults: libx264 crf "
            "20, preset ultrafast, one encoder thread; 50 fps from the env's render_fps) in "
            "its own process during the rollout, fed by the writer's thread through a "
            "bounded queue, competing for the same 2 cores; TorchRL's `pt` dump encodes "
            "nothing. Pong: the same env wrapping (`GymEnv('ALE/Pong-v5', "
            "render_mode='rgb_array')`, frameskip 4), its own render-only row as the base.",
            f"What bounds the mp4 row: ffmpeg spent {encode_ms:.2f} ms of CPU per CartPole "
            f"frame (converting to yuv420p, encoding, muxing), against {step_ms:.2f} ms per "
            f"render-only step ({encode_ms / step_ms:.0%} of it) and {held_ms:.2f} ms per step "
            "recording without encoding. The rollout never waits on the encoder while the "
            "queue has room (4 MB, then back-pressure: no frame is dropped), so the encoding "
            "is hidden only when a core is free for it; on these 2 cores shared with other "
            "jobs (see the load average) it is not, and the encoder's CPU shows up in the "
            f"wall time: the mp4 row costs {extra_ms:.2f} ms per step more than the held row.",
        ],
    )
