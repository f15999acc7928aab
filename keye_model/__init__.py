"""keye_model."""
from keye_model.processor import KeyeProcessor  # noqa: E402,F401  (processor helper)
