"""What every scenario shares: configuration, interleaved timing, statistics, memory probes.

Timing rule: every contender of a scenario is measured once per repeat, in an
order that rotates from repeat to repeat, after one discarded warm-up round, so
that load from other processes falls on all of them alike; ratios are taken
repeat by repeat (``a[i] / b[i]``) before their median is reported.

Memory rule: a peak resident set size comes from a fresh interpreter per
configuration (:func:`in_subprocess`), so no run inherits another's heap.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
CARTPOLE_SHAPE = (400, 600, 3)


@dataclass(frozen=True)
class Config:
    """How large and how often: the one object every scenario receives.

    Attributes:
        quick: tiny sizes that only prove the code runs (the smoke test); the
            numbers then mean nothing.
        repeats: timed repeats per contender, after one discarded warm-up round.
        workdir: a scratch directory for the files the scenarios write.
    """

    quick: bool
    repeats: int
    workdir: Path

    def size(self, full: int, quick: int) -> int:
        """``full``, or ``quick`` in quick mode."""
        return quick if self.quick else full


class Stats(NamedTuple):
    """Median, minimum and maximum of repeated measures."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """The statistics of ``values``."""
        return cls(statistics.median(values), min(values), max(values))

    def show(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        """``"median (min–max) unit"``, each value multiplied by ``scale``."""
        m, lo, hi = (f"{v * scale:.{digits}f}" for v in self)
        return f"{m} ({lo}–{hi}){' ' + unit if unit else ''}"


def interleave(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Measures each contender once per repeat, in a rotating order, after a warm-up round.

    Args:
        contenders: name -> a function that sets itself up, times its own work
            and returns the measure (seconds, seconds per step...).
        repeats: timed rounds (the warm-up round comes on top and is discarded).

    Returns:
        name -> the ``repeats`` measures, in round order, so that
        ``measures[a][i]`` and ``measures[b][i]`` were taken side by side.

    Example:
        >>> m = interleave({"a": lambda: 1.0, "b": lambda: 2.0}, repeats=3)
        >>> ratios(m["b"], m["a"]).median
        2.0
    """
    names = list(contenders)
    measures: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats + 1):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            value = contenders[name]()
            if round_:
                measures[name].append(value)
    return measures


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Stats:
    """Statistics of the per-repeat ratios ``numerators[i] / denominators[i]``."""
    return Stats.of([a / b for a, b in zip(numerators, denominators, strict=True)])


def timed(work: Callable[[], Any]) -> float:
    """Seconds ``work()`` takes on the wall clock."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def in_subprocess(target: str, **kwargs: Any) -> dict[str, Any]:
    """Runs ``target(**kwargs)`` in a fresh interpreter and reports its peak memory.

    Args:
        target: ``"module:function"``; the function's arguments and result are JSON.
        **kwargs: its arguments.

    Returns:
        ``{"result": ..., "peak_rss_mib": ..., "children_peak_rss_mib": ...}``:
        the peak resident set of the interpreter (``VmHWM``) and the largest
        sampled total of its child processes (ffmpeg); see ``benchmarks.child``.
    """
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.child", target, json.dumps(kwargs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"{target}({kwargs}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def balance(observation: Sequence[float]) -> int:
    """A CartPole-v1 controller that keeps the pole up for all 500 steps of an episode."""
    x, x_dot, theta, theta_dot = observation
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)


def cartpole_frames(n: int) -> np.ndarray:
    """``n`` real CartPole-v1 frames, uint8 ``[n, 400, 600, 3]``, rendered by gymnasium."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import gymnasium as gym

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    observation, _ = env.reset(seed=0)
    out = np.empty((n, *CARTPOLE_SHAPE), np.uint8)
    for i in range(n):
        out[i] = env.render()
        observation, _, terminated, truncated, _ = env.step(balance(observation))
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return out


@dataclass
class Section:
    """One scenario's results, as it appears in docs/benchmarks.md.

    Attributes:
        title: the scenario's heading.
        target: the target it is held to, in words.
        verdict: ``"met"`` or ``"not met"``, then by how much and why.
        headers: the table's column names.
        rows: the table's rows, already formatted.
        notes: what was measured how, and caveats, one paragraph each.
    """

    title: str
    target: str
    verdict: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The section in Markdown."""
        lines = [f"## {self.title}", "", f"**Target:** {self.target}", ""]
        lines += [f"**Verdict:** {self.verdict}", ""]
        lines += [table(self.headers, self.rows), ""]
        lines += [line for note in self.notes for line in (note, "")]
        return "\n".join(lines)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
