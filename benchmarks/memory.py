"""Scenario 3: peak resident memory against the length of a recording, 400x600x3 frames.

Each configuration runs alone in a fresh interpreter (``in_subprocess``) that
renders a pool of 64 real CartPole frames, then records ``frames`` steps cycling
over it and finishes the video:

* ``baseline``: the same process, recording nothing (imports + the frame pool);
* ``funrec``: the adapter, ``funrec_torchrl.VideoRecorder`` with a
  ``CSVLogger(video_format="mp4")``: each ``forward(td)`` folds the frame into
  ``funrec.frames()`` and streams it to ffmpeg; ``dump()`` finishes the mp4;
* ``torchrl``: TorchRL's ``VideoRecorder`` with a ``CSVLogger(video_format="pt")``
  (mp4 needs torchcodec, absent here), ``forward(td)`` per step, then ``dump()``.

TorchRL's peak grows with every frame it holds, and ``dump()`` stacks them into
a second copy; it is measured only while the machine has the memory for it, and
a straight line through the measured points extrapolates the rest.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks.harness import Config, Section, cartpole_frames, in_subprocess

NAME = "memory"
POOL = 64
FLAT_MIB = 100


def record(kind: str, frames: int, folder: str) -> dict[str, float]:
    """Records ``frames`` CartPole frames one ``kind`` of way and dumps them; returns seconds."""
    import funrec_torchrl
    import torch
    from tensordict import TensorDict
    from torchrl.record import CSVLogger, VideoRecorder

    pool = [TensorDict({"pixels": torch.from_numpy(f)}) for f in cartpole_frames(POOL)]
    start = time.perf_counter()
    if kind == "baseline":
        return {"seconds": 0.0, "frames": 0}
    if kind == "funrec":
        logger = CSVLogger(kind, log_dir=folder, video_format="mp4")
        rec = funrec_torchrl.VideoRecorder(logger, "pixels", fps=50)
    else:
        logger = CSVLogger(kind, log_dir=folder, video_format="pt")
        rec = VideoRecorder(logger, "pixels", skip=1)
    for i in range(frames):
        rec.forward(pool[i % POOL])
    rec.dump()
    seconds = time.perf_counter() - start
    shutil.rmtree(Path(folder, kind))
    return {"seconds": seconds, "frames": frames}


def run(cfg: Config) -> Section:
    """Measures peak RSS per length; target: funrec's at 20k <= its at 1k + 100 MiB."""
    lengths = [1_000, 5_000, 20_000] if not cfg.quick else [10, 20]
    folder = str(cfg.workdir / "memory")
    base = in_subprocess(f"{__name__}:record", kind="baseline", frames=0, folder=folder)
    funrec = {
        n: in_subprocess(f"{__name__}:record", kind="funrec", frames=n, folder=folder)
        for n in lengths
    }
    torchrl: dict[int, dict] = {}
    for n in lengths:
        if torchrl:  # its growth so far, scaled linearly to n frames
            last = max(torchrl)
            grown = torchrl[last]["peak_rss_mib"] - base["peak_rss_mib"]
            projected = base["peak_rss_mib"] + grown * n / last
            if projected * 2**20 > 0.6 * psutil.virtual_memory().available:
                break
        torchrl[n] = in_subprocess(f"{__name__}:record", kind="torchrl", frames=n, folder=folder)
    measured = sorted(torchrl)
    slope, intercept = (
        np.polyfit(measured, [torchrl[n]["peak_rss_mib"] for n in measured], 1)
        if len(measured) > 1
        else (0.0, torchrl[measured[0]]["peak_rss_mib"])
    )
    rows = []
    for n in lengths:
        f = funrec[n]
        if n in torchrl:
            t = f"{torchrl[n]['peak_rss_mib']:.0f}"
        else:
            t = f"~{slope * n + intercept:.0f} (extrapolated, not run)"
        rows.append(
            [
                str(n),
                f"{f['peak_rss_mib']:.0f}",
                f"{f['peak_rss_mib'] - base['peak_rss_mib']:+.0f}",
                f"{f['children_peak_rss_mib']:.0f}",
                f"{f['result']['frames'] / f['result']['seconds']:.0f}",
                t,
            ]
        )
    growth = funrec[lengths[-1]]["peak_rss_mib"] - funrec[lengths[0]]["peak_rss_mib"]
    verdict = (
        f"{'met' if growth <= FLAT_MIB else 'not met'}: funrec's peak grows by "
        f"{growth:+.0f} MiB from {lengths[0]} to {lengths[-1]} frames (limit {FLAT_MIB} MiB); "
        f"TorchRL grows by ~{slope:.2f} MiB per frame"
    )
    return Section(
        title="3. Peak RSS vs length, 400x600x3, streaming to mp4",
        target=f"funrec flat: at most {FLAT_MIB} MiB more at 20k frames than at 1k, "
        "against TorchRL's linear growth.",
        verdict=verdict,
        headers=[
            "frames",
            "funrec peak RSS MiB",
            "funrec minus baseline",
            "funrec's ffmpeg peak RSS MiB",
            "funrec frames/s",
            "TorchRL (pt) peak RSS MiB",
        ],
        rows=rows,
        notes=[
            f"Baseline (imports + {POOL}-frame pool, nothing recorded): "
            f"{base['peak_rss_mib']:.0f} MiB. One measurement per configuration (memory "
            "does not jitter like time). funrec: `funrec_torchrl.VideoRecorder(CSVLogger("
            "video_format='mp4'), fps=50).forward(td)` per step (libx264 crf 20 "
            "ultrafast, one encoder thread: open_video's defaults), "
            "then `dump()`; its ffmpeg is a separate process, sampled every 20 ms. TorchRL: "
            "`VideoRecorder(CSVLogger(video_format='pt'), skip=1).forward(td)` per step, "
            "then `dump()` (which `torch.stack`s every held frame into a second copy, then "
            f"`torch.save`s it). TorchRL measured at {measured}; a least-squares line "
            f"through them ({slope:.3f} MiB/frame) gives the rest, which were not run: the "
            "run is skipped when its projected peak exceeds 60% of the available memory.",
        ],
    )
