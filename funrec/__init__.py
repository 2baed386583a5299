"""funrec: record RL rollouts as pure functional folds.

A recorder is ``Recorder(init, step)``; a recording is
``state = recorder.step(state, td)`` over the TensorDicts of a rollout.
Files, processes and frameworks stay at the edges: ``funrec.writers`` and the
``funrec_torchrl`` adapter (a JAX adapter is next).
"""

from typing import Any

from funrec.combinators import (
    GateState,
    NamedState,
    capped_cubic,
    every,
    map_td,
    named,
    on_episodes,
    on_steps,
    pipeline,
    select,
    when,
)
from funrec.errors import BufferFullError, MissingKeyError, RecorderError
from funrec.layout import Layout, LayoutError
from funrec.recorder import Counts, Recorder, Stage, fold
from funrec.recorders import (
    Episode,
    EpisodeStatsState,
    FramesState,
    TensorDictsState,
    episode_stats,
    frames,
    tensordicts,
)
from funrec.views import counts, drain, episodes, grid, stack_frames, trajectory, video

__version__ = "0.1.0"

__all__ = [
    "BufferFullError",
    "Counts",
    "Episode",
    "EpisodeStatsState",
    "FramesState",
    "GateState",
    "Layout",
    "LayoutError",
    "MissingKeyError",
    "NamedState",
    "Recorder",
    "RecorderError",
    "Stage",
    "TensorDictsState",
    "capped_cubic",
    "counts",
    "drain",
    "episode_stats",
    "episodes",
    "every",
    "fold",
    "frames",
    "grid",
    "load",
    "map_td",
    "named",
    "on_episodes",
    "on_steps",
    "pipeline",
    "read_video",
    "select",
    "stack_frames",
    "tensordicts",
    "trajectory",
    "video",
    "when",
]


def __getattr__(name: str) -> Any:
    # The writers (the imperative shell) load on first use, so importing the
    # pure core never imports ffmpeg or touches files.
    if name in ("read_video", "load"):
        from funrec import writers

        return getattr(writers, name)
    raise AttributeError(f"module 'funrec' has no attribute {name!r}")
