"""The seam between the pure core and the writers: drain a state into a writer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

import funrec
from funrec.writers.trajectory import TrajectoryWriter
from funrec.writers.video import VideoWriter

__all__ = ["write_drained"]

Writer = VideoWriter | TrajectoryWriter


def write_drained(state: Any, writer: Writer | Mapping[str, Writer]) -> Any:
    """Writes what a recorder state holds, and returns the state emptied of it.

    ``frames()`` states go to a :class:`VideoWriter` (batched frames
    ``[*batch, 3, H, W]`` are tiled into one grid image per step, as TorchRL's
    VideoRecorder does for batched envs; the sidecar metadata gets the state's
    counts and layout); ``tensordicts()`` states go to a :class:`TrajectoryWriter`.
    A ``named(...)`` state takes a dict ``name -> writer``; names without a
    writer keep their items.

    If writing fails, the error propagates and the caller's ``state`` still holds
    every item: retry with another writer, nothing is lost (items a failed writer
    had already taken may then be written twice).

    Args:
      state: a recorder state (``frames()``, ``tensordicts()``, gated, or named).
      writer: a writer, or for a named state a dict of writers.

    Returns:
      The drained state; keep recording into it.

    Example:
      >>> import torch, tempfile
      >>> from tensordict import TensorDict
      >>> import funrec
      >>> from funrec.writers import open_video, write_drained
      >>> rec = funrec.frames("pixels")
      >>> state = rec.init()
      >>> with open_video(tempfile.mkdtemp() + "/clip.mp4") as w:
      ...     for t in range(4):
      ...         td = TensorDict({"pixels": torch.zeros(16, 16, 3, dtype=torch.uint8)})
      ...         state = write_drained(rec.step(state, td), w)
      >>> w.frames, len(funrec.video(state))
      (4, 0)
    """
    if isinstance(writer, Mapping):
        if not isinstance(state, funrec.NamedState):
            raise TypeError(
                f"write_drained(): a dict of writers needs a named(...) state, got "
                f"{type(state).__name__}; pass one writer."
            )
        unknown = set(writer) - set(state)
        if unknown:
            raise KeyError(
                f"write_drained(): no recorder named {sorted(unknown)} in "
                f"named({', '.join(state)}); use the names given to funrec.named(...)."
            )
        return state.replace(**{name: write_drained(state[name], w) for name, w in writer.items()})
    items, drained = funrec.drain(state)
    if isinstance(items, dict):
        raise TypeError(
            f"write_drained(): the state is named({', '.join(items)}); pass a dict name -> writer."
        )
    if items and isinstance(writer, VideoWriter) != isinstance(items[0], torch.Tensor):
        raise TypeError(
            f"write_drained(): the state holds {type(items[0]).__name__} items, which "
            f"{type(writer).__name__} cannot write; use a VideoWriter for frames() and a "
            "TrajectoryWriter for tensordicts()."
        )
    if isinstance(writer, VideoWriter):
        writer.metadata.update(_frames_metadata(drained))  # counts move even without frames
        if items:
            writer.write(funrec.clip(items))
    elif isinstance(writer, TrajectoryWriter):
        if items:
            writer.extend(torch.stack(items))
    else:
        raise TypeError(
            f"write_drained(): cannot write to {type(writer).__name__}; use a VideoWriter "
            "for frames() and a TrajectoryWriter for tensordicts()."
        )
    return drained


def _frames_metadata(state: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"counts": funrec.counts(state)._asdict()}
    while isinstance(state, funrec.GateState):
        state = state.inner
    if getattr(state, "layout", None) is not None:
        info["layout"] = dataclasses.asdict(state.layout)
    return info

