"""funrec_torchrl: funrec recorders as TorchRL transforms, rollout callbacks and collector hooks.

A drop-in for ``torchrl.record``: change
``from torchrl.record import VideoRecorder, PixelRenderTransform, TensorDictRecorder``
to ``from funrec_torchrl import ...``. Each transform holds a funrec recorder and
its state, and its TorchRL hooks only do ``state = recorder.step(state, td)``
(plus handing finished frames to a writer). See docs/migrating-from-torchrl.md.
Collectors record in their workers with :class:`CollectorRecorder` and
:func:`gather` (docs/workers.md).
"""

from funrec import center_crop
from funrec_torchrl.collectors import (
    CollectorRecorder,
    Gathered,
    VideoLogger,
    WorkerState,
    gather,
)
from funrec_torchrl.render import PixelRenderTransform
from funrec_torchrl.rollout import RecorderCallback, rollout
from funrec_torchrl.trajectory import TensorDictRecorder
from funrec_torchrl.video import VideoRecorder

__all__ = [
    "CollectorRecorder",
    "Gathered",
    "PixelRenderTransform",
    "RecorderCallback",
    "TensorDictRecorder",
    "VideoLogger",
    "VideoRecorder",
    "WorkerState",
    "center_crop",
    "gather",
    "rollout",
]
