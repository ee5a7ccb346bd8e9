"""User-facing error types.

Every error that can reach a user (CLI, app) derives from ``FGVCError`` and carries a one-line message that says
what is wrong and, where possible, what to do. They subclass ``ValueError`` so that generic callers that already
catch bad input keep working.
"""

from __future__ import annotations


class FGVCError(ValueError):
    """Base class for errors whose message is written for the user."""


class ImageError(FGVCError):
    """An image a user gave cannot be used (unreadable, corrupt, too large, degenerate size, ...)."""


class DatasetError(FGVCError):
    """A dataset folder does not match the expected on-disk layout; the message names the file at fault."""


class CheckpointError(FGVCError):
    """A checkpoint or weights file cannot be loaded into the requested architecture."""


class ConfigError(FGVCError):
    """A configuration value or model option is invalid."""


class TrainingError(FGVCError):
    """A training run cannot go on (a non-finite loss, an output folder it cannot write, ...); its last checkpoint
    stays as it was."""
