"""The adapter between search and the model: text in, a vector in the video space out.

Search only needs `version`, `dim` and `embed_text`; the model itself (keye_model) loads lazily on
the first text query, so the API starts without torch work and tests can pass their own model.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from api.problems import Invalid, Unavailable
from service.settings import Settings
from stores.db import model_version_name


class TextEmbedder(Protocol):
    version: str

    def embed_text(self, text: str, model: tuple[str, str] | None = None) -> list[float]:
        """`model`: (version, checkpoint) the vectors being searched belong to, when known."""
        ...


class ModelTextEmbedder:
    """Wraps a loaded keye_model model and its processor (one query at a time: the model is not
    thread-safe and queries are cheap next to video analysis)."""

    def __init__(self, model: Any, processor: Any, version: str) -> None:
        self.model, self.processor, self.version = model, processor, version
        self._lock = threading.Lock()

    def embed_text(self, text: str, model: tuple[str, str] | None = None) -> list[float]:
        # A fixed model: `model` is not loaded here; search compares `version` with what it searches.
        # The analysis's own text embedding: the same framing and pooling as the video vectors.
        from analysis import embed_text
        from analysis.errors import AnalysisError

        with self._lock:
            try:
                return embed_text(self.model, self.processor, text)
            except AnalysisError as e:
                raise Invalid(str(e)) from None


class KeyeTextEmbedder:
    """Embeds with a checkpoint loaded through keye_model on first use: the one search names (the
    version being searched, so queries meet that version's vectors), else KEYE_MODEL. A promotion
    or rollback changes the version searched; the next text query loads its model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = model_version_name(settings.model)
        self._inner: ModelTextEmbedder | None = None
        self._lock = threading.Lock()

    def _load(self, version: str, path: str) -> ModelTextEmbedder:
        with self._lock:
            if self._inner is None or self._inner.version != version:
                try:
                    import torch

                    import keye_model
                    from keye_model.processor import KeyeProcessor

                    model = keye_model.load(
                        path, device=self.settings.device, dtype=getattr(torch, self.settings.dtype)
                    )
                    # A checkpoint folder brings its own tokenizer files; a preset uses the packaged ones.
                    processor = KeyeProcessor.from_pretrained(path) if Path(path).is_dir() else KeyeProcessor()
                except Exception as e:  # noqa: BLE001 - any failure means text search is down
                    raise Unavailable(f"the model {path!r} cannot be loaded for text queries: {e}") from None
                self._inner = ModelTextEmbedder(model, processor, version)
                self.version = version
            return self._inner

    def embed_text(self, text: str, model: tuple[str, str] | None = None) -> list[float]:
        version, path = model or (model_version_name(self.settings.model), str(self.settings.model))
        return self._load(version, path).embed_text(text)
