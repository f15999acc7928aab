"""Generation engine: KV cache, sampling, batched prefill/decode, prefix reuse, streaming."""

from keye_model.engine.cache import KVCache
from keye_model.engine.sampling import LogitsProcessor, SamplingParams

__all__ = ["Engine", "GenerationResult", "KVCache", "LogitsProcessor", "Prefix", "SamplingParams", "StepOutput", "text_deltas"]


def __getattr__(name: str):
    # Lazy: engine.engine imports the attention plans, which import this package's cache module.
    if name in ("Engine", "GenerationResult", "Prefix", "StepOutput", "text_deltas"):
        from keye_model.engine import engine

        return getattr(engine, name)
    raise AttributeError(name)
