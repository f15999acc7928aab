"""Keye-VL processor: tokenizer, chat template, image and video preprocessing, typed media errors."""

from .config import MediaLimits, PixelBudgets
from .errors import (DecodeTimeout, ImageDecodeError, MediaError, ProcessorInputError, UnsupportedMedia,
                     VideoDecodeError, VideoTooLarge, VideoTooLong)
from .processor import KeyeInputs, KeyeProcessor
from .sizing import smart_resize
from .tokenizer import KeyeTokenizer
from .video import VideoInput, load_video, load_videos

__all__ = [
    "DecodeTimeout", "ImageDecodeError", "KeyeInputs", "KeyeProcessor", "KeyeTokenizer", "MediaError",
    "MediaLimits", "PixelBudgets", "ProcessorInputError", "UnsupportedMedia", "VideoDecodeError", "VideoInput",
    "VideoTooLarge", "VideoTooLong", "load_video", "load_videos", "smart_resize",
]
