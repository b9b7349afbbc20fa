"""Typed errors for images we refuse, each naming its reason.

The ``reason`` is a stable machine-readable code (used in ingest error files, API responses and
task failure records); the message is for people.
"""

from __future__ import annotations


class ImageError(ValueError):
    """An image that cannot become a vector. ``reason`` is a stable code."""

    reason = "invalid_image"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class EmptyImageError(ImageError):
    reason = "empty"


class NotAnImageError(ImageError):
    """The bytes are not in any image format Pillow knows (for example a text file renamed .jpg)."""

    reason = "not_an_image"


class CorruptImageError(ImageError):
    """A known format whose data is truncated or damaged."""

    reason = "corrupt"


class ImageTooSmallError(ImageError):
    reason = "too_small"


class ImageTooLargeError(ImageError):
    """Too many pixels (a decompression bomb) or too many bytes."""

    reason = "too_large"


class ImageNotFoundError(ImageError):
    reason = "not_found"
