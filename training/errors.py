"""Typed errors of the training package."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class: something a fine-tuning run cannot do, with a human reason."""


class TrainConfigError(TrainingError, ValueError):
    """A training configuration value out of range."""


class NotEnoughExamples(TrainingError):
    """The feedback yields too few usable examples for a run."""


class RegistryError(TrainingError):
    """A model-version operation that the registry's state does not allow (unknown version, nothing to roll back)."""
