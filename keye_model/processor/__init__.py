"""Keye-VL processor: tokenizer, chat template, image and video preprocessing, typed media errors.

Parity choices (against the official `processing_keye.py`, `image_processing_keye.py` and
`keye-vl-utils`):
- Images follow the official two-step pipeline: keye-vl-utils rounds to multiples of 28 within
  [4*28*28, 16384*28*28] pixels (PIL bicubic), then the processor applies its own budget
  [3136, 1003520]; the second resize only acts on images outside that budget.
  Deliberate differences: EXIF orientation is applied, and LA / palette transparency is also
  composited on white (the reference only handles RGBA).
- Videos from files follow keye-vl-utils' decord path for time ranges and the spec's formulas for
  frame count, indices and per-frame budgets, with torchvision's resize semantics (float bicubic
  with antialias, clamped and rounded) computed as banded matrix products: the same frames as
  decoding every frame and sampling, every pixel within one level of torchvision's resize (nearly
  all equal). Rotation metadata is honoured (the reference ignores it).
- Videos given as frame lists are fitted like images and padded to an even count; fps defaults
  to 2.
"""

from .config import MediaLimits, PixelBudgets
from .errors import (
    DecodeTimeout,
    ImageDecodeError,
    MediaError,
    ProcessorInputError,
    UnsupportedMedia,
    VideoDecodeError,
    VideoTooLarge,
    VideoTooLong,
)
from .processor import KeyeInputs, KeyeProcessor
from .sizing import smart_resize
from .tokenizer import KeyeTokenizer
from .video import VideoInput, load_video, load_videos

__all__ = [
    "DecodeTimeout",
    "ImageDecodeError",
    "KeyeInputs",
    "KeyeProcessor",
    "KeyeTokenizer",
    "MediaError",
    "MediaLimits",
    "PixelBudgets",
    "ProcessorInputError",
    "UnsupportedMedia",
    "VideoDecodeError",
    "VideoInput",
    "VideoTooLarge",
    "VideoTooLong",
    "load_video",
    "load_videos",
    "smart_resize",
]
