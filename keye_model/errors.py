"""Typed errors of the model library. Each message says what is wrong in human words."""

from __future__ import annotations


class KeyeModelError(ValueError):
    """Base of every error raised by keye_model outside the processor."""


class ConfigError(KeyeModelError):
    """A config.json that is unreadable, misses a required key or holds an impossible value."""


class CheckpointError(KeyeModelError):
    """Weights that do not fit the architecture: missing, unexpected or mis-shaped tensors."""


class InputError(KeyeModelError):
    """Model inputs that are inconsistent (shapes, grids, token counts, sampling settings)."""
