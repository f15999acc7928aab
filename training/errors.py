"""Typed errors of the training package. Their base class TrainingError and TrainConfigError live with the
configuration in service/train_config.py, where queueing a run (below the apps) validates it too."""

from __future__ import annotations

from service.train_config import TrainingError


class NotEnoughExamples(TrainingError):
    """The feedback yields too few usable examples for a run."""


class RegistryError(TrainingError):
    """A model-version operation that the registry's state does not allow (unknown version, nothing to roll back)."""
