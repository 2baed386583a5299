"""Scenario 1: what recording one step costs, against TorchRL and against a plain copy.

Every contender consumes the same prepared TensorDicts (a pool of distinct random
frames, cycled) and keeps every frame (skip=1), so it ends up holding
``steps`` frames, as TorchRL's VideoRecorder does until ``dump``:

* the copy limit: ``np.copyto`` of the frame into a buffer allocated and
  touched beforehand (no allocation, no page faults, no layout change);
* ``funrec.frames()``: the pure fold, ``state = rec.step(state, td)``;
* ``funrec_torchrl.VideoRecorder(logger=None)``, the adapter over that fold, and
  TorchRL 0.14.1's ``VideoRecorder(logger=None)``, both called through
  ``forward(td)`` as TensorDict-stream transforms (``make_grid=True`` on the
  batch, as a TorchRL env batch gets it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import funrec_torchrl
import numpy as np
import torch
import torchrl.record
from tensordict import TensorDict

import funrec
from benchmarks.harness import Config, Section, Stats, interleave, ratios

NAME = "record_cost"
POOL = 16
SIZES = {  # name -> (batch shape, frame shape HWC, steps in a full run)
    "84x84x3": ((), (84, 84, 3), 2000),
    "400x600x3": ((), (400, 600, 3), 300),
    "16x84x84x3": ((16,), (84, 84, 3), 400),
}


def _per_step(steps: int, work: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for i in range(steps):
        work(i)
    return (time.perf_counter() - start) / steps


def contenders(
    batch: tuple[int, ...], shape: tuple[int, ...], steps: int
) -> dict[str, Callable[[], float]]:
    """The contenders at one frame size, each returning seconds per step."""
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (*batch, *shape), dtype=np.uint8) for _ in range(POOL)]
    tds = [TensorDict({"pixels": torch.from_numpy(a)}, batch_size=batch) for a in pool]

    def copy_limit() -> float:
        buffer = np.ones((steps, *batch, *shape), np.uint8)  # allocated and touched
        return _per_step(steps, lambda i: np.copyto(buffer[i], pool[i % POOL]))

    def funrec_fold() -> float:
        rec = funrec.frames("pixels")
        box = [rec.init()]

        def step(i: int) -> None:
            box[0] = rec.step(box[0], tds[i % POOL])

        return _per_step(steps, step)

    def adapter(cls: type) -> Callable[[], float]:
        def measure() -> float:
            rec = cls(None, "bench", skip=1, make_grid=bool(batch))
            return _per_step(steps, lambda i: rec.forward(tds[i % POOL]))

        return measure

    return {
        "copy limit": copy_limit,
        "funrec frames()": funrec_fold,
        "funrec_torchrl VideoRecorder": adapter(funrec_torchrl.VideoRecorder),
        "TorchRL VideoRecorder": adapter(torchrl.record.VideoRecorder),
    }


def run(cfg: Config) -> Section:
    """Measures the per-step cost at each frame size; target: funrec <= 2x the copy limit."""
    rows, misses = [], []
    for size, (batch, shape, steps) in SIZES.items():
        m = interleave(contenders(batch, shape, cfg.size(steps, 20)), cfg.repeats)
        limit, fold = m["copy limit"], m["funrec frames()"]
        adapter, torchrl = m["funrec_torchrl VideoRecorder"], m["TorchRL VideoRecorder"]
        fold_limit, adapter_limit = ratios(fold, limit), ratios(adapter, limit)
        if max(fold_limit.median, adapter_limit.median) > 2:
            misses.append(
                f"{size}: fold {fold_limit.median:.1f}x, adapter {adapter_limit.median:.1f}x "
                "the copy limit"
            )
        rows.append(
            [
                size,
                Stats.of(limit).show(1e6),
                Stats.of(fold).show(1e6),
                Stats.of(adapter).show(1e6),
                Stats.of(torchrl).show(1e6),
                fold_limit.show(digits=1),
                adapter_limit.show(digits=1),
                ratios(torchrl, fold).show(digits=2),
                ratios(torchrl, adapter).show(digits=2),
            ]
        )
    verdict = "not met: " + "; ".join(misses) if misses else "met at every size"
    return Section(
        title="1. Per-step record cost",
        target="funrec <= 2x the copy limit at every size "
        "(i.e. >= 5x faster than TorchRL at 84x84, >= 9x on the 16-env batch).",
        verdict=verdict,
        headers=[
            "frame",
            "copy limit µs/step",
            "funrec frames() µs/step",
            "funrec_torchrl VideoRecorder µs/step",
            "TorchRL VideoRecorder µs/step",
            "fold / limit",
            "adapter / limit",
            "TorchRL / fold",
            "TorchRL / adapter",
        ],
        rows=rows,
        notes=[
            "Each cell: median (min–max) over the repeats; ratios are per repeat, then "
            "the median. Every contender keeps every frame (skip=1) in memory; the copy "
            "limit is `np.copyto` into a pre-allocated, pre-touched buffer: no allocation, "
            "no page faults, no layout change. funrec stores each frame as a fresh "
            "contiguous CHW tensor (`funrec.layout.normalize`: a transposing copy); TorchRL "
            "`clone()`s the HWC frame and keeps a permuted CHW *view* of it, so it copies "
            "bytes in order and leaves the transpose to `dump`'s `torch.stack`. TorchRL is "
            "called as `VideoRecorder(None, tag, skip=1, make_grid=<batched>).forward(td)`, "
            "no logger (dump is scenario 6); funrec's adapter the same way (`logger=None` "
            "keeps the frames, like TorchRL).",
        ],
    )
