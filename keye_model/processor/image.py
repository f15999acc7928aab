"""Images: load (path, bytes or PIL), orient, flatten alpha on white, resize, cut into patches."""

from __future__ import annotations

import base64
import binascii
import io
import os
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import MEAN, PATCH, STD, MediaLimits, PixelBudgets
from .errors import ImageDecodeError, ProcessorInputError, UnsupportedMedia, VideoTooLarge
from .sizing import smart_resize


def open_image(src: Any, limits: MediaLimits) -> Image.Image:
    """A decoded RGB PIL image, EXIF orientation applied, transparency composited on white."""
    name = None
    if isinstance(src, Image.Image):
        img = src
    else:
        data: IO[bytes]  # in memory, or the opened file
        if isinstance(src, str) and src.startswith("data:image"):
            try:
                data = io.BytesIO(base64.b64decode(src.split("base64,", 1)[1], validate=True))
            except (IndexError, ValueError, binascii.Error):
                raise ImageDecodeError("invalid base64 image data URI") from None
        elif isinstance(src, (bytes, bytearray, memoryview)):
            data = io.BytesIO(bytes(src))
        elif isinstance(src, (str, os.PathLike)):
            name = str(src)
            if name.startswith(("http://", "https://")):
                raise UnsupportedMedia(
                    "URLs are not fetched here: download first (service.fetch), then pass the file", name
                )
            path = Path(name[7:] if name.startswith("file://") else name)
            if not path.is_file():
                raise UnsupportedMedia("image file not found", name)
            if path.stat().st_size > limits.max_file_bytes:
                raise VideoTooLarge(f"image file over {limits.max_file_bytes} bytes", name)
            data = path.open("rb")
        else:
            raise ProcessorInputError(f"an image must be a path, bytes or PIL image, got {type(src).__name__}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(data)
                w, h = img.size
                if w * h > limits.max_image_pixels:
                    raise VideoTooLarge(f"image of {w}x{h} pixels is over the limit", name)
                img.load()
        except UnidentifiedImageError as e:
            raise UnsupportedMedia(f"not a readable image: {e}", name) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise VideoTooLarge(f"image too large: {e}", name) from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageDecodeError(f"corrupt or truncated image: {e}", name) from None
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject a good image
        pass
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB") if img.mode != "RGB" else img


def fit_image(
    img: Image.Image,
    budgets: PixelBudgets,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    max_ratio: float = 200.0,
    resized: tuple[int, int] | None = None,
) -> Image.Image:
    """Both resizes of the reference: keye-vl-utils rounding, then the processor's budget.

    The second resize only changes an image above the processor's max (1003520 pixels) or below
    its min; for everything else it is the identity, as in the reference.
    """
    w, h = img.size
    lo = budgets.image_min_pixels if min_pixels is None else min_pixels
    hi = budgets.image_max_pixels if max_pixels is None else max_pixels
    if resized is not None:  # explicit resized_height / resized_width, still rounded to 28
        h1, w1 = smart_resize(
            *resized, min_pixels=budgets.image_min_pixels, max_pixels=budgets.image_max_pixels, max_ratio=max_ratio
        )
    else:
        h1, w1 = smart_resize(h, w, min_pixels=lo, max_pixels=hi, max_ratio=max_ratio)
    if (w1, h1) != (w, h):
        img = img.resize((w1, h1), Image.Resampling.BICUBIC)
    h2, w2 = smart_resize(
        h1, w1, min_pixels=budgets.processor_min_pixels, max_pixels=budgets.processor_max_pixels, max_ratio=max_ratio
    )
    if (w2, h2) != (w1, h1):
        img = img.resize((w2, h2), Image.Resampling.BICUBIC)
    return img


def pixel_patches(frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """uint8 (T, 3, H, W) -> float32 (T*gh*gw, 3, 14, 14): plain row-major patches frame after
    frame, rescaled by 1/255 and normalized with the processor's mean and std.

    Patches are cut while the pixels are still bytes (a quarter of the memory traffic of moving
    floats), then converted and normalized in place: the same float operations in the same order
    as the reference, so the values are bit-identical to rescale-normalize-then-patchify.
    """
    t, c, h, w = frames.shape
    gh, gw = h // PATCH, w // PATCH
    p = frames.reshape(t, c, gh, PATCH, gw, PATCH).permute(0, 2, 4, 1, 3, 5)
    x = p.reshape(t * gh * gw, c, PATCH, PATCH).float()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return x.mul_(1 / 255).sub_(mean).div_(std), (t, gh, gw)


def requested_size(item: Any) -> tuple[int, int] | None:
    """(resized_height, resized_width) of a message item, when it gives both."""
    h, w = item.get("resized_height"), item.get("resized_width")
    if h is None or w is None:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
        raise ProcessorInputError(f"resized_height and resized_width must be positive ints, got {h!r}, {w!r}")
    return h, w


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
