"""funrec_torchrl: funrec recorders as TorchRL transforms and rollout callbacks.

A drop-in for ``torchrl.record``: change
``from torchrl.record import VideoRecorder, PixelRenderTransform, TensorDictRecorder``
to ``from funrec_torchrl import ...``. Each transform holds a funrec recorder and
its state, and its TorchRL hooks only do ``state = recorder.step(state, td)``
(plus handing finished frames to a writer). See docs/migrating-from-torchrl.md.
"""

from funrec import center_crop
from funrec_torchrl.render import PixelRenderTransform
from funrec_torchrl.rollout import RecorderCallback, rollout
from funrec_torchrl.trajectory import TensorDictRecorder
from funrec_torchrl.video import VideoRecorder

__all__ = [
    "PixelRenderTransform",
    "RecorderCallback",
    "TensorDictRecorder",
    "VideoRecorder",
    "center_crop",
    "rollout",
]
