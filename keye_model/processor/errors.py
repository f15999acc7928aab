"""Typed errors for bad media and bad processor input.

Every error carries a human reason (its message) and the input it was about, so a worker can put
`type(err).__name__` and `str(err)` in a dead-letter record without re-raising anything.
"""

from __future__ import annotations


class MediaError(Exception):
    """Base of every media problem: the input is unusable, retrying will not help."""

    def __init__(self, reason: str, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{reason} ({source})" if source else reason)

    def __reduce__(self):  # keep reason and source when crossing a process boundary
        return (self.__class__, (self.reason, self.source))


class UnsupportedMedia(MediaError):
    """Not an image or video we can read: unknown container, no video stream, audio only."""


class ImageDecodeError(MediaError):
    """An image file that cannot be decoded (corrupt, truncated)."""


class VideoDecodeError(MediaError):
    """A video whose data cannot be decoded: truncated, corrupt, or no frames at all."""


class VideoTooLarge(MediaError):
    """Declared dimensions, pixel count or file size over the configured limits."""


class VideoTooLong(MediaError):
    """Duration over the configured maximum."""


class DecodeTimeout(MediaError):
    """Decoding took longer than the configured time budget."""


class ProcessorInputError(ValueError):
    """Malformed messages or options (a caller bug, not a media problem)."""
