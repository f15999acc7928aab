"""Pipeline fixtures; the helpers live in pipeline_support.py so tests can import them by a unique name."""

from pipeline_support import pipeline, vector_sink  # noqa: F401 - fixtures
