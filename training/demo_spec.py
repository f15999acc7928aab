"""What `keye-demo` is: its shape, the corpus it learns from, the analysis configuration it is trained
for, and the training recipe. The shape and recipe were picked from measurements (bench/demo_shapes.py);
the fingerprint names the whole recipe, so a cached model is reused only when nothing changed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ANALYSIS_CONFIG = Path(__file__).with_name("demo_analysis.json")

# Same architecture as the release (SigLIP tower, projector, Qwen3 decoder, 151,936-token vocabulary),
# narrow and shallow.
DEMO_SHAPE: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,  # heads x head_dim = hidden_size, as the reference's attention needs
    "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},  # sums to head_dim / 2
    "torch_dtype": "float32",
    "vision_config": {"hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 2},
}


@dataclass(frozen=True)
class DemoSpec:
    shape: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(DEMO_SHAPE)))
    analysis_config: Path = ANALYSIS_CONFIG
    train_seed: int = 0  # corpus train split seed (train seeds are 0..999)
    train_clips: int = 160
    violating_share: float = 0.4  # of the train clips with a moderation cue (the platform's is 0.17)
    steps: int = 400
    batch_size: int = 4  # examples per micro-batch
    grad_accum: int = 1
    lr: float = 5e-3
    warmup_steps: int = 20
    contrastive_weight: float = 1.0  # of the InfoNCE term against the supervised answer NLL
    temperature: float = 0.07
    sampled_vocab: int = 0  # the answer loss's softmax over the answers and this many drawn tokens (0: all)
    used_vocab: bool = True  # train only the token rows the data uses, the lm_head's others zero (training.vocab)
    withheld: tuple[str, ...] = ()  # moderation categories whose clips the model never sees (the loop's variant)
    seed: int = 0

    def fingerprint(self) -> str:
        raw = {**asdict(self), "analysis_config": json.loads(Path(self.analysis_config).read_text())}
        return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def with_(self, **changes) -> DemoSpec:
        return replace(self, **changes)


DEMO = DemoSpec()
