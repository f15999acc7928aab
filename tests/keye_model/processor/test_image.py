"""Image preprocessing: sizes, orientation, alpha, pixel values, patch order, bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from keye_model.processor import (
    ImageDecodeError,
    MediaLimits,
    ProcessorInputError,
    UnsupportedMedia,
    VideoTooLarge,
    smart_resize,
)


@pytest.mark.parametrize(
    "h,w,lo,hi,expected",
    [
        (56, 84, 3136, 1003520, (56, 84)),
        (100, 100, 3136, 1003520, (112, 112)),  # rounds to the nearest multiple of 28
        (10, 10, 3136, 1003520, (56, 56)),  # scaled up to the minimum area
        (1080, 1920, 3136, 1003520, (728, 1316)),  # scaled down under the maximum (floor)
        (720, 1280, 128 * 28 * 28, 768 * 28 * 28, (560, 1008)),
    ],
)
def test_smart_resize(h, w, lo, hi, expected):
    got = smart_resize(h, w, min_pixels=lo, max_pixels=hi)
    assert got == expected
    assert got[0] % 28 == 0 and got[1] % 28 == 0 and lo <= got[0] * got[1] <= hi


def test_smart_resize_rejects_extreme_aspect():
    with pytest.raises(ProcessorInputError, match="aspect"):
        smart_resize(10, 2100)


def _img(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pixel_values_within_one_level_of_reference_resize(processor):
    arr = _img(300, 500)
    out = processor([{"role": "user", "content": [{"type": "image", "image": Image.fromarray(arr)}]}])
    h, w = smart_resize(300, 500, min_pixels=3136, max_pixels=1003520)
    assert out.image_grid_thw.tolist() == [[1, h // 14, w // 14]]
    # reference: PIL bicubic, rescale, normalize, then raw patches in row-major order
    ref = np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255
    ref = torch.from_numpy((ref - 0.5) / 0.5).permute(2, 0, 1)
    gh, gw = h // 14, w // 14
    pv = out.pixel_values
    assert pv.shape == (gh * gw, 3, 14, 14) and pv.dtype == torch.float32
    for r, c in [(0, 0), (0, gw - 1), (gh - 1, 0), (gh // 2, gw // 3)]:
        patch = ref[:, r * 14 : (r + 1) * 14, c * 14 : (c + 1) * 14]
        assert (pv[r * gw + c] - patch).abs().max() <= 2 / 255 + 1e-6  # 1/255 before the *2 of std 0.5
    rebuilt = pv.reshape(gh, gw, 3, 14, 14).permute(2, 0, 3, 1, 4).reshape(3, h, w)
    assert (rebuilt - ref).abs().max() <= 2 / 255 + 1e-6


def test_large_image_is_resized_twice_like_the_reference(processor):
    arr = _img(1200, 1600, seed=1)
    out = processor([{"role": "user", "content": [{"type": "image", "image": Image.fromarray(arr)}]}])
    h1, w1 = smart_resize(1200, 1600, min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28)
    h2, w2 = smart_resize(h1, w1, min_pixels=3136, max_pixels=1003520)
    assert out.image_grid_thw.tolist() == [[1, h2 // 14, w2 // 14]]
    assert h2 * w2 <= 1003520


def test_per_request_pixel_budget(processor):
    arr = _img(560, 560)
    item = {"type": "image", "image": Image.fromarray(arr), "max_pixels": 224 * 224}
    out = processor([{"role": "user", "content": [item]}])
    assert out.image_grid_thw.tolist() == [[1, 16, 16]]
    assert (out.input_ids == 151655).sum().item() == 64


def test_rgba_is_composited_on_white(processor, tmp_path):
    rgba = np.zeros((56, 56, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:28, :, 3] = 255  # top half opaque red, bottom half fully transparent
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    pv = processor([{"role": "user", "content": [{"image": str(path)}]}]).pixel_values
    img = pv.reshape(4, 4, 3, 14, 14).permute(2, 0, 3, 1, 4).reshape(3, 56, 56)
    assert torch.allclose(img[:, :20], torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1), atol=2 / 255)
    assert torch.allclose(img[:, 36:], torch.ones(3, 20, 56), atol=2 / 255)


def test_exif_orientation_is_applied(processor):
    arr = np.zeros((56, 112, 3), np.uint8)
    arr[:, :56] = 255  # left half white on a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif, quality=100)
    out = processor([{"role": "user", "content": [{"image": buf.getvalue()}]}])  # bytes input
    assert out.image_grid_thw.tolist() == [[1, 8, 4]]  # displayed as portrait
    img = out.pixel_values.reshape(8, 4, 3, 14, 14).permute(2, 0, 3, 1, 4).reshape(3, 112, 56)
    assert img[:, :40].mean() > 0.9 and img[:, 72:].mean() < -0.9  # white half is now on top


@pytest.mark.parametrize(
    "data,err",
    [
        (b"", UnsupportedMedia),
        (b"definitely not an image", UnsupportedMedia),
    ],
)
def test_unreadable_images(processor, data, err):
    with pytest.raises(err):
        processor([{"role": "user", "content": [{"image": data}]}])


def test_truncated_png(processor, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_img(200, 200)).save(buf, format="PNG")
    path = tmp_path / "t.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError):
        processor([{"role": "user", "content": [{"image": str(path)}]}])


def test_image_over_pixel_limit(tmp_path):
    from keye_model.processor import KeyeProcessor

    p = KeyeProcessor(limits=MediaLimits(max_image_pixels=100 * 100))
    with pytest.raises(VideoTooLarge):
        p([{"role": "user", "content": [{"image": Image.fromarray(_img(10, 10))}, {"image": _png(200, 200)}]}])


def _png(h, w):
    buf = io.BytesIO()
    Image.fromarray(_img(h, w)).save(buf, format="PNG")
    return buf.getvalue()


def test_missing_file(processor):
    with pytest.raises(UnsupportedMedia, match="not found"):
        processor([{"role": "user", "content": [{"image": "/nonexistent/x.png"}]}])


def test_data_uri_and_url_inputs(processor):
    import base64

    uri = "data:image/png;base64," + base64.b64encode(_png(56, 56)).decode()
    out = processor([{"role": "user", "content": [{"type": "image", "image": uri}]}])
    assert out.image_grid_thw.tolist() == [[1, 4, 4]]
    with pytest.raises(ImageDecodeError):
        processor([{"role": "user", "content": [{"image": "data:image/png;base64,@@@"}]}])
    with pytest.raises(UnsupportedMedia, match="URL"):
        processor([{"role": "user", "content": [{"image": "https://example.com/a.png"}]}])


def test_explicit_resized_size(processor):
    item = {"type": "image", "image": Image.fromarray(_img(300, 500)), "resized_height": 60, "resized_width": 90}
    out = processor([{"role": "user", "content": [item]}])
    assert out.image_grid_thw.tolist() == [[1, 4, 6]]  # (56, 84): rounded to multiples of 28
    with pytest.raises(ProcessorInputError):
        processor([{"role": "user", "content": [dict(item, resized_width="wide")]}])
