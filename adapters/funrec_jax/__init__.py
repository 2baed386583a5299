"""funrec_jax: funrec's recorders inside ``jax.jit``, ``jax.lax.scan`` and ``jax.vmap``.

The recorders take the core's parameters and follow the core's rules
(:mod:`funrec.rules`); only their storage differs: a state is a pytree of
fixed-shape arrays (a ring of capacity ``max_frames``...), so it can be a scan
carry and a vmap operand. :func:`export` turns a state into the core's state
for ``funrec.video``, ``funrec.counts``, ``funrec.writers``...;
:func:`write_drained` streams chunks out of a running scan. See docs/jax.md.
"""

from funrec_jax.combinators import every, named, on_episodes, on_steps, when
from funrec_jax.export import export
from funrec_jax.recorders import (
    EpisodeStatsState,
    FramesState,
    Recorder,
    Refused,
    TensorDictsState,
    episode_stats,
    frames,
    tensordicts,
)
from funrec_jax.stream import drain, finish, write_drained

__all__ = [
    "EpisodeStatsState",
    "FramesState",
    "Recorder",
    "Refused",
    "TensorDictsState",
    "drain",
    "episode_stats",
    "every",
    "export",
    "finish",
    "frames",
    "named",
    "on_episodes",
    "on_steps",
    "tensordicts",
    "when",
    "write_drained",
]
