"""The adapter between search and the model: text in, a vector in the video space out.

Search only needs `version`, `dim` and `embed_text`; the model itself (keye_model) loads lazily on
the first text query, so the API starts without torch work and tests can pass their own model.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from api.problems import Unavailable
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
        import torch

        with self._lock, torch.inference_mode():
            vec = self.model.embed(**_text_inputs(self.processor, text))
        return [float(x) for x in vec.reshape(-1).float().tolist()]


def _text_inputs(processor: Any, text: str) -> dict[str, Any]:
    batch = processor(text=text)
    return dict(batch) if not isinstance(batch, dict) else batch


class KeyeTextEmbedder:
    """Loads `settings.model` through keye_model on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = settings.model
        self._inner: ModelTextEmbedder | None = None
        self._lock = threading.Lock()

    def _load(self) -> ModelTextEmbedder:
        with self._lock:
            if self._inner is None:
                try:
                    import keye_model

                    model = keye_model.load(self.settings.model)
                    processor = keye_model.KeyeProcessor.from_pretrained(self.settings.model)
                except Exception as e:  # noqa: BLE001 - any failure means text search is down
                    raise Unavailable(f"the model {self.settings.model!r} cannot be loaded for text queries: {e}") from None
                version = getattr(model, "version", None) or self.settings.model
                self._inner = ModelTextEmbedder(model, processor, str(version))
                self.version = self._inner.version
            return self._inner

    def embed_text(self, text: str) -> list[float]:
        return self._load().embed_text(text)
