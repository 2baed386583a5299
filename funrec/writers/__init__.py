"""The imperative shell: writers that put recordings on disk.

The pure core (``funrec``) never imports this package. Videos go through
:func:`open_video` / :class:`VideoDirectory` and come back with :func:`read_video`;
TensorDict steps stream into a :class:`TrajectoryWriter` store and come back with
:func:`load`. :func:`write_drained` connects a recorder state to a writer.
Unfinished writes stay in partial files beside their target (:func:`partials`).
"""

from funrec.writers._files import WriterError, check_fps, partials, save, sidecar_path
from funrec.writers.directory import VideoDirectory
from funrec.writers.drained import write_drained
from funrec.writers.trajectory import TrajectoryWriter, episode, load
from funrec.writers.video import FORMATS, VideoWriter, iter_video, open_video, read_video

__all__ = [
    "FORMATS",
    "TrajectoryWriter",
    "VideoDirectory",
    "VideoWriter",
    "WriterError",
    "check_fps",
    "episode",
    "iter_video",
    "load",
    "open_video",
    "partials",
    "read_video",
    "save",
    "sidecar_path",
    "write_drained",
]
