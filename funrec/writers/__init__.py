"""The imperative shell: writers that put recordings on disk.

The pure core (``funrec``) never imports this package. Videos go through
:func:`open_video` / :class:`VideoDirectory` and come back with :func:`read_video`.
"""

from funrec.writers._files import WriterError
from funrec.writers.video import FORMATS, VideoWriter, open_video, read_video, sidecar_path

__all__ = [
    "FORMATS",
    "VideoWriter",
    "WriterError",
    "open_video",
    "read_video",
    "sidecar_path",
]
