"""What the vector store and its two engines share: the vector's name, hits, the typed error.
Its own module so that stores.vectors (which picks an engine) and the engines import it, not each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VECTOR = "keye"


class VectorStoreError(RuntimeError):
    """The vector store refused a request (bad dimension, unsupported filter, unreachable server)."""


@dataclass(frozen=True)
class Hit:
    """A stored point as search and retrieval return it: its id (canonical UUID text), score, payload."""

    id: str
    score: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict)
