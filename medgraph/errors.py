"""Exceptions shared by every medgraph package.

Each user mistake raises a subclass of :class:`MedgraphError` whose message names the bad input and
the fix; the CLI prints that message on one line and exits with code 2.
"""

from __future__ import annotations


class MedgraphError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class ConfigurationError(MedgraphError):
    """A setting is missing, malformed, or names something that cannot be used."""


class ModelLoadError(MedgraphError):
    """Model weights could not be found or loaded."""


class EngineError(MedgraphError):
    """An inference engine failed to answer (server error, timeout, bad response)."""


class ImageLoadError(MedgraphError):
    """A file or payload given as an image could not be decoded safely."""


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than allowed (found from its header, before any decoding).

    ``pixels`` is None when only the decoder's own bomb guard knows the size.
    """

    def __init__(self, message: str, *, pixels: int | None, max_pixels: int) -> None:
        super().__init__(message)
        self.pixels = pixels
        self.max_pixels = max_pixels


class SeriesGeometryError(ImageLoadError):
    """A DICOM series cannot be stacked into one volume (mixed orientations, no slice order)."""


class StudyTooLargeError(ImageLoadError):
    """A study folder or zip holds more bytes or files than the configured limit."""


class UnsafeArchiveError(ImageLoadError):
    """A zip member has a path-traversal or absolute name, so the archive is refused."""


class IngestError(MedgraphError):
    """A literature file could not be read or indexed."""


class IndexUnavailableError(MedgraphError):
    """The literature index is missing, unreadable, or in use by another process."""
