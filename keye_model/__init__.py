"""keye_model: Keye-VL-8B-Preview as a plain PyTorch library."""

from keye_model.checkpoint import load
from keye_model.config import KeyeConfig, VisionConfig, preset_config
from keye_model.errors import CheckpointError, ConfigError, InputError, KeyeModelError
from keye_model.model import KeyeModel
from keye_model.processor import KeyeProcessor  # noqa: F401  (processor helper: keye_model.KeyeProcessor)

__all__ = [
    "load",
    "KeyeModel",
    "KeyeConfig",
    "VisionConfig",
    "preset_config",
    "CheckpointError",
    "ConfigError",
    "InputError",
    "KeyeModelError",
]
