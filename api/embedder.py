"""The adapter between search and the model: text in, a vector in the video space out.

Search only needs `version`, `dim` and `embed_text`; the model itself (keye_model) loads lazily on
the first text query, so the API starts without torch work and tests can pass their own model.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from api.problems import Invalid, Unavailable
from keye.settings import Settings


class TextEmbedder(Protocol):
    version: str

    def embed_text(self, text: str) -> list[float]: ...


class ModelTextEmbedder:
    """Wraps a loaded keye_model model and its processor (one query at a time: the model is not
    thread-safe and queries are cheap next to video analysis)."""

    def __init__(self, model: Any, processor: Any, version: str) -> None:
        self.model, self.processor, self.version = model, processor, version
        self._lock = threading.Lock()

    def embed_text(self, text: str) -> list[float]:
        # The analysis's own text embedding: the same framing and pooling as the video vectors.
        from keye.analysis import embed_text
        from keye.analysis.errors import AnalysisError

        with self._lock:
            try:
                return embed_text(self.model, self.processor, text)
            except AnalysisError as e:
                raise Invalid(str(e)) from None


class KeyeTextEmbedder:
    """Loads `settings.model` through keye_model on first use; its version is the workers' (the
    model's own `version`, else the preset or folder name), so queries meet the right vectors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = settings.model
        self._inner: ModelTextEmbedder | None = None
        self._lock = threading.Lock()

    def _load(self) -> ModelTextEmbedder:
        with self._lock:
            if self._inner is None:
                try:
                    import torch

                    import keye_model
                    from keye_model.processor import KeyeProcessor

                    name = self.settings.model
                    model = keye_model.load(name, device=self.settings.device,
                                            dtype=getattr(torch, self.settings.dtype))
                    # A checkpoint folder brings its own tokenizer files; a preset uses the packaged ones.
                    processor = KeyeProcessor.from_pretrained(name) if Path(name).is_dir() else KeyeProcessor()
                except Exception as e:  # noqa: BLE001 - any failure means text search is down
                    raise Unavailable(f"the model {self.settings.model!r} cannot be loaded for text queries: {e}") from None
                version = getattr(model, "version", None) or self.settings.model
                self._inner = ModelTextEmbedder(model, processor, str(version))
                self.version = self._inner.version
            return self._inner

    def embed_text(self, text: str) -> list[float]:
        return self._load().embed_text(text)
