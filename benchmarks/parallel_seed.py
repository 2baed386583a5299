"""Scenario 10: the seed's second example, 16 CartPole envs in a ParallelEnv, rendered and recorded.

TorchRL's "Recorders" page renders a ``ParallelEnv(16, EnvCreator(make_env))``
of ``GymEnv("CartPole-v1", render_mode="rgb_array")`` with a
``PixelRenderTransform`` on the parent, records it with ``VideoRecorder`` and
runs ``rollout(30)`` then ``dump()``. One ParallelEnv is started (not timed) and
each contender wraps it in its own transforms:

* render only: the PixelRenderTransform;
* funrec: plus ``funrec_torchrl.VideoRecorder(CSVLogger(video_format="mp4"))``,
  the example with its import swapped: the 16 frames of a step are tiled into
  one 4x4 grid image that streams to ffmpeg;
* funrec held: ``VideoRecorder(None, ...)``, recording without encoding.

TorchRL's own VideoRecorder is not a contender: on this example it fails at the
first rollout (the seed's notes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from benchmarks.harness import Config, Section, Stats, interleave, ratios

NAME = "parallel_seed"
WAYS = (
    "render only",
    "funrec VideoRecorder (mp4, streaming)",
    "funrec VideoRecorder (logger=None: held, no encoding)",
)


def _make_env():
    from torchrl.envs import GymEnv

    return GymEnv("CartPole-v1", render_mode="rgb_array")


def run(cfg: Config) -> Section:
    """Times the seed's rollout with and without recording, side by side (no target)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import funrec_torchrl
    from torchrl.envs import EnvCreator, ParallelEnv, TransformedEnv
    from torchrl.record import CSVLogger

    workers, steps = cfg.size(16, 2), cfg.size(30, 5)
    base = ParallelEnv(workers, EnvCreator(_make_env))
    base.start()
    base.set_seed(0)

    def contender(way: str) -> Callable[[], float]:
        def measure() -> float:
            env = TransformedEnv(base, funrec_torchrl.PixelRenderTransform())
            if way == WAYS[1]:
                logger = CSVLogger(
                    "seed", log_dir=str(cfg.workdir / "parallel"), video_format="mp4"
                )
                env.append_transform(funrec_torchrl.VideoRecorder(logger, "pixels_record"))
            elif way == WAYS[2]:
                env.append_transform(funrec_torchrl.VideoRecorder(None, "pixels_record"))
            start = time.perf_counter()
            env.rollout(steps)
            if way != WAYS[0]:
                env.transform.dump()
            return time.perf_counter() - start

        return measure

    try:
        m = interleave({way: contender(way) for way in WAYS}, cfg.repeats)
    finally:
        base.close()
    rows = [
        [way, Stats.of(m[way]).show(1e3 / steps, 1), ratios(m[way], m[WAYS[0]]).show(digits=2)]
        for way in WAYS
    ]
    mp4, held = (ratios(m[way], m[WAYS[0]]).median for way in WAYS[1:])
    return Section(
        title=f"10. The seed's ParallelEnv example: {workers} CartPole envs, rollout({steps})",
        target="report the recording cost on the seed's 16-env ParallelEnv example.",
        verdict=f"reported (no numeric target): recording to mp4 costs {mp4:.2f}x rendering "
        f"only; recording without encoding {held:.2f}x",
        headers=["way", "ms/step (rollout + dump)", "time / render only"],
        rows=rows,
        notes=[
            f"{workers} worker processes on this machine's cores; the PixelRenderTransform on "
            f"the parent renders every worker's 400x600 frame at each step; {steps} steps, "
            "with the env's own random actions and `dump()` timed with the rollout. The mp4 "
            f"holds one grid image of the {workers} frames per step (the core's tiling, as "
            "TorchRL's VideoRecorder does for a batch), encoded by ffmpeg in its own process "
            "with open_video's defaults (libx264 ultrafast, one encoder thread); the held row "
            "separates recording from encoding.",
        ],
    )
