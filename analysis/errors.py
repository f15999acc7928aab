"""Typed errors of the analysis package: each says what was wrong in words a caller can act on."""

from __future__ import annotations


class AnalysisError(RuntimeError):
    """The analysis of a video could not be completed."""


class AnalysisConfigError(ValueError):
    """The analysis configuration (taxonomy, prompts, budgets, thresholds) is invalid."""


class GrammarError(ValueError):
    """A constrained-decoding grammar could not be built or a token broke it."""


class UnusableEvent(ValueError):
    """A feedback event that cannot become a corrected answer (its reason is recorded, never raised out)."""


class SegmentationError(AnalysisError, ValueError):
    """Frames and timestamps given to shot detection are inconsistent."""
