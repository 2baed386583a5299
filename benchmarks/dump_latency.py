"""Scenario 6: how long the call that finishes a 5k-frame video blocks the caller.

Both contenders first take the same 5000 real CartPole frames (400x600, a pool
of 64 cycled) as TensorDicts, untimed; then only the finishing call is timed:

* funrec: ``funrec_torchrl.VideoRecorder(CSVLogger(video_format="mp4"))``
  streamed every frame to ffmpeg as it came; its ``dump()`` only finishes the
  file: ffmpeg encodes what is still in the pipe, writes the last fragment and
  exits, the sidecar is written, the file is renamed;
* TorchRL: ``VideoRecorder(CSVLogger(video_format="pt"))`` held the 5000 frames;
  ``dump()`` stacks them into one ``[1, T, 3, H, W]`` tensor and ``torch.save``s
  it (mp4 would need torchcodec, absent here).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

import funrec_torchrl
import torch
from tensordict import TensorDict
from torchrl.record import CSVLogger, VideoRecorder

from benchmarks.harness import Config, Section, Stats, cartpole_frames, interleave, ratios

NAME = "dump_latency"
POOL = 64
FUNREC = "funrec_torchrl VideoRecorder.dump() (mp4, streamed)"
TORCHRL = "TorchRL VideoRecorder.dump() (pt)"


def run(cfg: Config) -> Section:
    """Times the finishing call after T frames; reported against TorchRL's."""
    steps = cfg.size(5_000, 30)
    pool = [TensorDict({"pixels": torch.from_numpy(f)}) for f in cartpole_frames(POOL)]
    folder = cfg.workdir / "dump"

    def dump(make: Callable[[], Any], name: str) -> Callable[[], float]:
        def measure() -> float:
            rec = make()
            for i in range(steps):
                rec.forward(pool[i % POOL])
            start = time.perf_counter()
            rec.dump()
            seconds = time.perf_counter() - start
            shutil.rmtree(folder / name)
            return seconds

        return measure

    def funrec_recorder() -> funrec_torchrl.VideoRecorder:
        logger = CSVLogger("funrec", str(folder), video_format="mp4")
        return funrec_torchrl.VideoRecorder(logger, "pixels", fps=50)

    def torchrl_recorder() -> VideoRecorder:
        return VideoRecorder(CSVLogger("torchrl", str(folder), video_format="pt"), "pixels", skip=1)

    m = interleave(
        {FUNREC: dump(funrec_recorder, "funrec"), TORCHRL: dump(torchrl_recorder, "torchrl")},
        cfg.repeats,
    )
    rows = [[name, Stats.of(values).show(1e3, 0)] for name, values in m.items()]
    speedup = ratios(m[TORCHRL], m[FUNREC])
    return Section(
        title=f"6. Finishing latency at T={steps}",
        target="report funrec's finishing call (finalize only) against TorchRL's dump "
        "(stack + write).",
        verdict=f"reported (no numeric target): TorchRL's dump blocks {speedup.median:.1f}x "
        "longer than funrec's finalize",
        headers=["finishing call", "ms (blocking the caller)"],
        rows=[*rows, ["TorchRL / funrec", speedup.show(digits=1)]],
        notes=[
            f"{steps} frames of 400x600x3 ({steps * 400 * 600 * 3 / 2**30:.1f} GiB raw). "
            "Only the finishing call is timed. funrec's encoding cost was paid during the "
            "rollout, in ffmpeg's process (scenarios 5 and 7 show what that costs the loop); "
            "TorchRL's `pt` dump encodes nothing, so a TorchRL mp4 dump would add the whole "
            "encode on top.",
        ],
    )
