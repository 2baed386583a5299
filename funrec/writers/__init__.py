"""The imperative shell: writers that put recordings on disk.

The pure core (``funrec``) never imports this package. Videos go through
:func:`open_video` / :class:`VideoDirectory` and come back with :func:`read_video`;
TensorDict steps stream into a :class:`TrajectoryWriter` store and come back with
:func:`load`. :func:`write_drained` connects a recorder state to a writer.
"""

from funrec.writers._files import WriterError
from funrec.writers.directory import VideoDirectory
from funrec.writers.drained import write_drained
from funrec.writers.trajectory import TrajectoryWriter, episode, load
from funrec.writers.video import FORMATS, VideoWriter, open_video, read_video, sidecar_path

__all__ = [
    "FORMATS",
    "TrajectoryWriter",
    "VideoDirectory",
    "VideoWriter",
    "WriterError",
    "episode",
    "load",
    "open_video",
    "read_video",
    "sidecar_path",
    "write_drained",
]
