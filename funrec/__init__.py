"""funrec: record RL rollouts as pure functional folds.

A recorder is ``Recorder(init, step)``; a recording is
``state = recorder.step(state, td)`` over the TensorDicts of a rollout.

The layers: this package is the pure core (recorders, combinators, rules,
layouts, images, views); ``funrec.writers`` is the shell that puts recordings
on disk; ``funrec.testing`` holds the Hypothesis helpers; the adapters
``funrec_torchrl`` and ``funrec_jax`` connect the core to those frameworks.
"""

from funrec import rules
from funrec._queue import Queue, Storage
from funrec.combinators import (
    GateState,
    NamedState,
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
from funrec.images import center_crop, clip, grid, resize, stack_frames
from funrec.layout import Layout, LayoutError
from funrec.merge import merge, with_origin
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
from funrec.rules import capped_cubic
from funrec.views import counts, drain, episodes, trajectory, video

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
    "Queue",
    "Recorder",
    "RecorderError",
    "Stage",
    "Storage",
    "TensorDictsState",
    "capped_cubic",
    "center_crop",
    "clip",
    "counts",
    "drain",
    "episode_stats",
    "episodes",
    "every",
    "fold",
    "frames",
    "grid",
    "map_td",
    "merge",
    "named",
    "on_episodes",
    "on_steps",
    "pipeline",
    "resize",
    "rules",
    "select",
    "stack_frames",
    "tensordicts",
    "trajectory",
    "video",
    "when",
    "with_origin",
]

