"""Scenario 1: what recording one step costs, against TorchRL and against a plain copy.

Every contender consumes the same prepared TensorDicts (a pool of distinct random
frames, cycled), skip=1:

* the copy limit: ``np.copyto`` of the frame into a buffer allocated and
  touched beforehand (no allocation, no page faults, no layout change);
* copy into fresh memory: ``np.empty`` + ``np.copyto`` per frame, every copy
  kept: the floor for any recorder that holds every frame in new memory, page
  faults included;
* copy into a buffer preallocated by capacity: what a recorder given
  ``max_frames`` could do, with the allocation and the first touch of the
  buffer (``np.ones``) timed, as the steps that follow it would pay;
* ``funrec.frames()``: the pure fold, ``state = rec.step(state, td)``, holding
  every frame;
* ``funrec.frames()`` + ``drain`` every step: what a streaming shell does; the
  drained frame is dropped, so its memory is reused;
* ``funrec_torchrl.VideoRecorder(logger=None)``, the adapter over that fold, and
  TorchRL 0.14.1's ``VideoRecorder(logger=None)``, both called through
  ``forward(td)`` as TensorDict-stream transforms, both holding every frame
  (``make_grid=True`` on the batch, as a TorchRL env batch gets it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import funrec_torchrl
import numpy as np
import torch
import torchrl.record
from tensordict import TensorDict

import funrec
from benchmarks.harness import Config, Section, Stats, interleave, ratios
from funrec import rules
from funrec.recorders import FramesState, _count, _keep

NAME = "record_cost"
POOL = 16
SIZES = {  # name -> (batch shape, frame shape HWC, steps in a full run)
    "84x84x3": ((), (84, 84, 3), 2000),
    "400x600x3": ((), (400, 600, 3), 300),
    "16x84x84x3": ((16,), (84, 84, 3), 400),
    # The seed's ParallelEnv example: 16 CartPole envs rendered, a 30-step rollout.
    "16x400x600x3": ((16,), (400, 600, 3), 30),
}
LIMIT, FRESH = "copy limit (pre-touched buffer)", "copy into fresh memory, kept"
PREALLOC = "copy into a buffer preallocated by capacity (allocation timed)"
FOLD, STREAM = "funrec frames()", "funrec frames() + drain each step"
ADAPTER, TORCHRL = "funrec_torchrl VideoRecorder", "TorchRL VideoRecorder"
HELD_TO_TARGET = (FOLD, ADAPTER)


def _per_step(steps: int, work: Callable[[int], object]) -> float:
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

    def preallocated() -> float:
        start = time.perf_counter()
        buffer = np.ones((steps, *batch, *shape), np.uint8)
        _per_step(steps, lambda i: np.copyto(buffer[i], pool[i % POOL]))
        return (time.perf_counter() - start) / steps

    def fresh_copies() -> float:
        kept = []

        def step(i: int) -> None:
            out = np.empty_like(pool[0])
            np.copyto(out, pool[i % POOL])
            kept.append(out)

        return _per_step(steps, step)

    def fold(drain: bool) -> Callable[[], float]:
        def measure() -> float:
            rec = funrec.frames("pixels")
            box = [rec.init()]

            def step(i: int) -> None:
                box[0] = rec.step(box[0], tds[i % POOL])
                if drain:
                    _, box[0] = funrec.drain(box[0])

            return _per_step(steps, step)

        return measure

    def adapter(cls: type) -> Callable[[], float]:
        def measure() -> float:
            rec = cls(None, "bench", skip=1, make_grid=True if batch else None)
            return _per_step(steps, lambda i: rec.forward(tds[i % POOL]))

        return measure

    return {
        LIMIT: copy_limit,
        FRESH: fresh_copies,
        PREALLOC: preallocated,
        FOLD: fold(drain=False),
        STREAM: fold(drain=True),
        ADAPTER: adapter(funrec_torchrl.VideoRecorder),
        TORCHRL: adapter(torchrl.record.VideoRecorder),
    }


def profile(steps: int, repeats: int) -> dict[str, Stats]:
    """Where the steady-state step of ``frames()`` spends its time, at 84x84x3.

    Each part of the step is timed alone, as the step runs it (the same calls
    on the same values), ``steps`` times per repeat; the parts are not
    interleaved with each other, so read them against the whole step and the
    copy limit measured in the same loop.
    """
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (84, 84, 3), dtype=np.uint8) for _ in range(POOL)]
    tensors = [torch.from_numpy(a) for a in pool]
    tds = [TensorDict({"pixels": t}) for t in tensors]
    rec = funrec.frames("pixels")
    admission = rules.admit(0, None, "drop_newest")
    shape, clone = torch.Size((84, 84, 3)), tensors[0].clone()

    def whole(i: int) -> None:
        box[0] = rec.step(box[0], tds[i % POOL])

    def kept_clone(i: int) -> None:
        box.append(tensors[i % POOL].clone())

    def check(i: int) -> bool:
        t = tensors[i % POOL]
        return t.dtype is torch.uint8 and t.shape == shape and t.is_cpu and not t.requires_grad

    buffer = np.ones((steps, 84, 84, 3), np.uint8)
    counts, state = funrec.Counts(), FramesState()
    parts: dict[str, Callable[[int], object]] = {
        "copy limit (np.copyto into a touched buffer)": lambda i: np.copyto(
            buffer[i], pool[i % POOL]
        ),
        "whole step, frames() holding every frame": whole,
        "TensorDict.get, which the step skips (it reads the dict)": lambda i: tds[i % POOL].get(
            "pixels"
        ),
        "layout checks (dtype, shape, device, grad)": check,
        "clone into fresh memory, kept": kept_clone,
        "clone, memory reused (dropped at once)": lambda i: tensors[i % POOL].clone(),
        "movedim to the [3, H, W] view": lambda i: clone.movedim(-1, -3),
        "count (rules.count's increment, cached)": lambda i: _count(counts, admission),
        "queue append": lambda i: _keep(state.items, admission, i),
        "FramesState(...)": lambda i: FramesState(state.items, counts, None, 0, 0),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(repeats + 1):
        for name, work in parts.items():
            box: list = [rec.init()]
            times[name].append(_per_step(steps, work))
    return {name: Stats.of(values[1:]) for name, values in times.items()}


def run(cfg: Config) -> Section:
    """Measures the per-step cost at each frame size; target: funrec <= 2x the copy limit."""
    rows, checks, met = [], [], True
    for size, (batch, shape, steps) in SIZES.items():
        m = interleave(contenders(batch, shape, cfg.size(steps, 20)), cfg.repeats)
        for name, values in m.items():
            over_limit = ratios(values, m[LIMIT])
            if name in HELD_TO_TARGET:
                ok = over_limit.median <= 2
                met = met and ok
                checks.append(f"{size} {name} {over_limit.median:.1f}x{'' if ok else ' (over)'}")
            rows.append(
                [
                    size,
                    name,
                    Stats.of(values).show(1e6),
                    over_limit.show(digits=1),
                    ratios(m[TORCHRL], values).show(digits=2),
                ]
            )
    parts = profile(cfg.size(2000, 20), cfg.repeats)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    breakdown = "; ".join(f"{name}: {stats.show(1e6, 2)} µs" for name, stats in parts.items())
    verdict = (
        f"{'met' if met else 'not met'}, funrec / copy limit (at most 2x): "
        + "; ".join(checks)
        + ". See the notes for where the time goes"
    )
    return Section(
        title="1. Per-step record cost",
        target="funrec <= 2x the copy limit at every size "
        "(i.e. >= 5x faster than TorchRL at 84x84, >= 9x on the 16-env batch).",
        verdict=verdict,
        headers=["frame", "contender", "µs/step", "/ copy limit", "TorchRL / this"],
        rows=rows,
        notes=[
            "Each cell: median (min–max) over the repeats; ratios are per repeat, then "
            "the median. funrec's `normalize` and TorchRL both `clone()` the HWC frame as "
            "is and keep a channels-last `[3, H, W]` view, so both copy each frame once, "
            "in order. What separates a holding recorder from the copy limit is (a) the "
            "first touch of new memory: every held frame lands in memory this VM maps page "
            "by page ('copy into fresh memory, kept' measures that floor alone; it varies "
            "from run to run with the allocator's and the VM's state), and (b) Python and "
            "torch dispatch per step, which dominates small frames. Draining every step "
            "(streaming) frees each frame, so its memory is reused and (a) disappears.",
            "The steady state: once the layout is known, a step "
            "whose frame is a uint8 RGB CPU tensor of the stream's shape, with no crop or "
            "resize, reads the key from the TensorDict's own dict (`TensorDict.get` costs "
            "about a small frame's copy), checks dtype, shape, device and grad, calls "
            "`clone()` and `movedim` (normalize's one copy and view, without its checks "
            "and conversions), takes the admission (`rules.admit`, decided once for an "
            "unbounded buffer), adds the count (`rules.count`'s increment, computed once "
            "per admission by the rule), appends to the queue and builds one "
            "`FramesState`. Any other frame goes through `normalize` as before. The last "
            "full run before it measured `frames()` at 4.4x and the adapter at 5.8x at 84x84.",
            "Where the steady-state step goes, at 84x84x3 (each part timed alone as the "
            "step runs it, median (min–max) per step over the repeats; load average "
            f"{load}): {breakdown}. What bounds 84x84: the two torch calls a held frame "
            "needs (a clone into fresh memory and the view that makes it `[3, H, W]`) "
            "cost by themselves about twice the copy limit; the rest of the step is "
            "about 1–3 µs of Python. A recorder under 2x would need a frame without its "
            "own torch allocation and view (e.g. numpy copies into a slab, views made in "
            "bulk by `unbind`: about a third less for the copy in a micro-benchmark), "
            "with an ownership rule so that branching states never share a slot; not done. "
            "The adapter adds the `named()` layer (one `NamedState` per step) and its "
            "TorchRL transform calls.",
            "Held 400x600 frames: the cost is the first touch of new memory, and "
            "preallocating does not remove it: 'copy into a buffer preallocated by "
            "capacity' (allocation and touch timed) costs what fresh copies cost. In fresh "
            "interpreters holding 300 frames (load 4–6) we measured: copy limit 80–150 "
            "µs/frame; `clone()` kept 460–1160; preallocated and touched (timed) 520–560; "
            "slabs of 12 frames in transparent huge pages (numpy's `madvise`; THP is "
            "'madvise' here) 470–1970, the kernel compacting memory to find huge pages. "
            "Only reusing touched memory is cheaper, and inside the core that conflicts "
            "with states being values: a drained frame belongs to the caller (a writer, a "
            "list) and to every earlier state that held it, so the recorder cannot know "
            "its memory is free; a capacity ring written in place (`drop_oldest`) "
            "overwrites the frame the previous state holds as its oldest, which the "
            "purity law rejects ('a later step changed the state given to step i'). The "
            "rule kept: a step writes only into memory no existing value can see. The "
            "allocator reuses a frame's memory once its last reference dies, which is why "
            "streaming (drain each step) runs at or under the copy limit.",
            "16x400x600x3 is the batch of the seed's ParallelEnv example (16 CartPole "
            "envs, `rollout(30)`): the recording cost per step on top of the env, which is "
            "not run here (16 worker processes on 2 shared cores would bury it in noise).",
            "TorchRL is called as `VideoRecorder(None, tag, skip=1, make_grid=True if "
            "batched else None).forward(td)`, no logger (dump is scenario 6); funrec's "
            "adapter the same way "
            "(`logger=None` keeps the frames, like TorchRL). On the batch, TorchRL tiles "
            "the 16 frames into a grid at every step; funrec keeps the `[16, 3, H, W]` "
            "batch and tiles only when it writes.",
        ],
    )
