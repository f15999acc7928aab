"""Generation engine: KV cache, sampling, batched prefill/decode, prefix reuse, streaming."""

from keye_model.engine.engine import Engine, GenerationResult, Prefix, StepOutput, text_deltas
from keye_model.engine.sampling import LogitsProcessor, SamplingParams
from keye_model.kv_cache import KVCache  # the engine's cache; kv_cache.py so that attention.py can use it too

__all__ = [
    "Engine",
    "GenerationResult",
    "KVCache",
    "LogitsProcessor",
    "Prefix",
    "SamplingParams",
    "StepOutput",
    "text_deltas",
]
