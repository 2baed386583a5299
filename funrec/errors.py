"""Exceptions raised by funrec recorders.

Every error names the key, the shape and the fix. A recorder raises before it
builds a new state, so the state passed to the failing ``step`` stays valid and
nothing already recorded is lost.
"""


class RecorderError(ValueError):
    """Bad input or configuration for a recorder."""


class MissingKeyError(RecorderError, KeyError):
    """A key the recorder reads is not in the incoming TensorDict."""

    def __str__(self) -> str:
        return str(self.args[0])


class BufferFullError(RecorderError):
    """A recorder with ``overflow="error"`` reached ``max_frames``/``max_steps``."""
