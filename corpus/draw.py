"""Procedural drawing with PIL: scene backgrounds, object sprites, on-screen words, moderation cues.

Everything is a pure function of its arguments and a numpy Generator, so a seed fixes every pixel.
Sizes are relative to the frame so the same drawing works at 180x320 and at 640x360.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _jitter(rgb: RGB, rng: np.random.Generator, amount: int = 18) -> RGB:
    r, g, b = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)
    return r, g, b


def _vgradient(h: int, w: int, top: RGB, bottom: RGB) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    col = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return np.broadcast_to(col, (h, w, 3)).astype(np.uint8)


def background(scene: str, w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A scene as a still backdrop; shots of one scene differ in detail, never in kind."""
    if scene == "beach":
        img = Image.fromarray(_vgradient(h, w, _jitter((110, 180, 240), rng), (190, 225, 250)))
        d = ImageDraw.Draw(img)
        sea = int(h * rng.uniform(0.42, 0.5))
        d.rectangle([0, sea, w, int(h * 0.62)], fill=_jitter((20, 110, 180), rng))
        d.rectangle([0, int(h * 0.62), w, h], fill=_jitter((230, 205, 150), rng))
        r = int(w * 0.09)
        cx = int(w * rng.uniform(0.15, 0.85))
        d.ellipse([cx - r, int(h * 0.08), cx + r, int(h * 0.08) + 2 * r], fill=(255, 235, 120))
        return img
    if scene == "forest":
        img = Image.fromarray(_vgradient(h, w, _jitter((40, 90, 40), rng), (20, 50, 25)))
        d = ImageDraw.Draw(img)
        for _ in range(7):
            x = int(rng.uniform(0, w))
            tw = int(w * rng.uniform(0.04, 0.08))
            d.rectangle([x, int(h * 0.3), x + tw, h], fill=_jitter((90, 60, 30), rng))
            r = int(w * rng.uniform(0.12, 0.2))
            cy = int(h * rng.uniform(0.15, 0.35))
            d.ellipse([x + tw // 2 - r, cy - r, x + tw // 2 + r, cy + r], fill=_jitter((30, 120, 40), rng))
        return img
    if scene == "city":
        img = Image.fromarray(_vgradient(h, w, _jitter((120, 140, 170), rng), (200, 200, 210)))
        d = ImageDraw.Draw(img)
        x = 0
        while x < w:
            bw = int(w * rng.uniform(0.12, 0.25))
            top = int(h * rng.uniform(0.2, 0.5))
            d.rectangle([x, top, x + bw, h], fill=_jitter((70, 70, 80), rng, 25))
            for wy in range(top + 6, h - 6, max(6, h // 30)):
                for wx in range(x + 3, x + bw - 4, max(6, w // 25)):
                    if rng.random() < 0.5:
                        d.rectangle([wx, wy, wx + 2, wy + 3], fill=(240, 220, 120))
            x += bw + 2
        return img
    if scene == "kitchen":
        img = Image.new("RGB", (w, h), _jitter((235, 225, 200), rng))
        d = ImageDraw.Draw(img)
        for i in range(3):
            x0 = int(w * (0.05 + 0.32 * i))
            d.rectangle(
                [x0, int(h * 0.05), x0 + int(w * 0.27), int(h * 0.25)],
                fill=_jitter((160, 110, 70), rng),
                outline=(90, 60, 40),
            )
        tile = max(8, w // 10)
        a, b = _jitter((250, 250, 250), rng, 5), _jitter((60, 150, 150), rng)
        for ty in range(int(h * 0.55), h, tile):
            for tx in range(0, w, tile):
                d.rectangle([tx, ty, tx + tile, ty + tile], fill=a if (tx // tile + ty // tile) % 2 else b)
        d.rectangle([0, int(h * 0.5), w, int(h * 0.55)], fill=(120, 120, 120))
        return img
    if scene == "studio":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((xx - w / 2) / w, (yy - h * 0.45) / h)
        base = np.array(_jitter((200, 200, 205), rng), np.float32)
        arr = base * np.clip(1.1 - 1.3 * r, 0.35, 1.0)[..., None]
        return Image.fromarray(arr.astype(np.uint8))
    if scene == "snow":
        img = Image.fromarray(_vgradient(h, w, _jitter((150, 190, 230), rng), (225, 235, 245)))
        d = ImageDraw.Draw(img)
        ground = int(h * rng.uniform(0.5, 0.6))
        d.rectangle([0, ground, w, h], fill=(250, 250, 252))
        for _ in range(40):
            x, y = int(rng.uniform(0, w)), int(rng.uniform(0, ground))
            d.ellipse([x, y, x + 2, y + 2], fill=(255, 255, 255))
        return img
    raise ValueError(f"unknown scene {scene!r}")


def _outline(rgb: RGB) -> RGB:
    return (245, 245, 245) if sum(rgb) < 200 else (20, 20, 20)


def sprite(obj: str, rgb: RGB, s: int) -> Image.Image:
    """One object as an RGBA sprite of s x s pixels, filled with its colour."""
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    ol = _outline(rgb)
    lw = max(1, s // 40)
    f = lambda *p: [int(v * s) for v in p]  # noqa: E731 - relative box

    if obj == "ball":
        d.ellipse(f(0.1, 0.1, 0.9, 0.9), fill=rgb, outline=ol, width=lw)
        d.arc(f(0.1, 0.35, 0.9, 0.65), 0, 180, fill=ol, width=lw)
    elif obj == "car":
        d.polygon(
            [tuple(f(0.25, 0.35)), tuple(f(0.7, 0.35)), tuple(f(0.82, 0.5)), tuple(f(0.15, 0.5))], fill=rgb, outline=ol
        )
        d.rectangle(f(0.05, 0.5, 0.95, 0.72), fill=rgb, outline=ol, width=lw)
        for x in (0.25, 0.75):
            d.ellipse(f(x - 0.1, 0.62, x + 0.1, 0.82), fill=(20, 20, 20), outline=(200, 200, 200))
    elif obj == "cat":
        d.ellipse(f(0.2, 0.45, 0.8, 0.9), fill=rgb, outline=ol, width=lw)
        d.ellipse(f(0.3, 0.15, 0.7, 0.5), fill=rgb, outline=ol, width=lw)
        d.polygon([tuple(f(0.32, 0.25)), tuple(f(0.35, 0.05)), tuple(f(0.47, 0.18))], fill=rgb, outline=ol)
        d.polygon([tuple(f(0.68, 0.25)), tuple(f(0.65, 0.05)), tuple(f(0.53, 0.18))], fill=rgb, outline=ol)
        d.line(f(0.78, 0.8, 0.95, 0.5), fill=rgb, width=max(2, s // 14))
    elif obj == "tree":
        d.rectangle(f(0.43, 0.55, 0.57, 0.95), fill=(100, 65, 30))
        d.ellipse(f(0.15, 0.05, 0.85, 0.65), fill=rgb, outline=ol, width=lw)
    elif obj == "house":
        d.rectangle(f(0.15, 0.45, 0.85, 0.95), fill=rgb, outline=ol, width=lw)
        d.polygon([tuple(f(0.05, 0.47)), tuple(f(0.5, 0.08)), tuple(f(0.95, 0.47))], fill=(120, 40, 30), outline=ol)
        d.rectangle(f(0.42, 0.65, 0.58, 0.95), fill=(70, 45, 25))
    elif obj == "cup":
        d.polygon(
            [tuple(f(0.15, 0.2)), tuple(f(0.7, 0.2)), tuple(f(0.62, 0.9)), tuple(f(0.23, 0.9))], fill=rgb, outline=ol
        )
        d.arc(f(0.55, 0.35, 0.9, 0.7), 270, 90, fill=ol if sum(rgb) > 200 else rgb, width=max(2, s // 16))
    elif obj == "phone":
        d.rounded_rectangle(f(0.28, 0.05, 0.72, 0.95), radius=max(2, s // 12), fill=rgb, outline=ol, width=lw)
        d.rectangle(f(0.32, 0.13, 0.68, 0.82), fill=(25, 30, 45))
    elif obj == "shoe":
        d.polygon(
            [
                tuple(f(0.1, 0.45)),
                tuple(f(0.4, 0.45)),
                tuple(f(0.55, 0.6)),
                tuple(f(0.9, 0.68)),
                tuple(f(0.92, 0.8)),
                tuple(f(0.08, 0.8)),
            ],
            fill=rgb,
            outline=ol,
        )
        d.rectangle(f(0.08, 0.8, 0.92, 0.87), fill=(240, 240, 240) if sum(rgb) < 600 else (40, 40, 40))
    elif obj == "bag":
        d.arc(f(0.3, 0.1, 0.7, 0.55), 180, 360, fill=ol, width=max(2, s // 18))
        d.rectangle(f(0.15, 0.33, 0.85, 0.9), fill=rgb, outline=ol, width=lw)
    elif obj == "bottle":
        d.rectangle(f(0.33, 0.35, 0.67, 0.95), fill=rgb, outline=ol, width=lw)
        d.polygon(
            [tuple(f(0.33, 0.36)), tuple(f(0.44, 0.2)), tuple(f(0.56, 0.2)), tuple(f(0.67, 0.36))], fill=rgb, outline=ol
        )
        d.rectangle(f(0.43, 0.08, 0.57, 0.2), fill=(60, 60, 60))
    elif obj == "flower":
        d.line(f(0.5, 0.5, 0.5, 0.97), fill=(40, 140, 40), width=max(2, s // 20))
        for a in range(0, 360, 60):
            cx, cy = 0.5 + 0.18 * np.cos(np.radians(a)), 0.35 + 0.18 * np.sin(np.radians(a))
            d.ellipse(f(cx - 0.13, cy - 0.13, cx + 0.13, cy + 0.13), fill=rgb, outline=ol)
        d.ellipse(f(0.42, 0.27, 0.58, 0.43), fill=(250, 200, 30))
    elif obj == "fish":
        d.polygon([tuple(f(0.68, 0.5)), tuple(f(0.95, 0.3)), tuple(f(0.95, 0.7))], fill=rgb, outline=ol)
        d.ellipse(f(0.08, 0.3, 0.75, 0.7), fill=rgb, outline=ol, width=lw)
        d.ellipse(f(0.2, 0.42, 0.28, 0.5), fill=ol)
    else:
        raise ValueError(f"unknown object {obj!r}")
    return img


def _text(d: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, fill: RGB, anchor: str = "mm") -> None:
    d.text(xy, text, font=font(size), fill=fill, anchor=anchor, stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))


def word(overlay: Image.Image, text: str) -> None:
    """An on-screen word, large and centred in the upper part of the frame."""
    w, h = overlay.size
    _text(ImageDraw.Draw(overlay), (w // 2, int(h * 0.16)), text, int(min(w, h) * 0.2), (255, 255, 255))


def _knife(d: ImageDraw.ImageDraw, x: int, y: int, s: int) -> None:
    d.polygon(
        [(x, y), (x + int(s * 0.7), y - s // 8), (x + int(s * 0.7), y + s // 10)],
        fill=(200, 205, 210),
        outline=(60, 60, 60),
    )
    d.rectangle([x + int(s * 0.7), y - s // 10, x + s, y + s // 12], fill=(40, 25, 15))


def _gun(d: ImageDraw.ImageDraw, x: int, y: int, s: int) -> None:
    dark = (25, 25, 28)
    d.rectangle([x, y, x + s, y + s // 5], fill=dark)  # barrel + slide
    d.polygon(
        [
            (x + int(s * 0.62), y + s // 5),
            (x + int(s * 0.9), y + s // 5),
            (x + int(s * 0.98), y + int(s * 0.7)),
            (x + int(s * 0.74), y + int(s * 0.7)),
        ],
        fill=dark,
    )  # grip
    d.arc(
        [x + int(s * 0.45), y + s // 8, x + int(s * 0.68), y + int(s * 0.42)], 0, 180, fill=dark, width=max(2, s // 30)
    )
    d.ellipse([x - s // 14, y + s // 40, x + s // 14, y + s // 5 - s // 40], fill=(90, 90, 90))  # the muzzle


def _splatter(d: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int], n: int) -> None:
    x0, y0, x1, y1 = box
    for _ in range(n):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r = rng.uniform(0.02, 0.09) * (x1 - x0 + y1 - y0)
        d.ellipse([cx - r, cy - r * rng.uniform(0.6, 1.2), cx + r, cy + r], fill=(150 + int(rng.integers(0, 60)), 0, 0))


def _pill(d: ImageDraw.ImageDraw, x: int, y: int, s: int, rgb: RGB) -> None:
    d.rounded_rectangle([x, y, x + s, y + s // 2], radius=s // 4, fill=(245, 245, 245), outline=(60, 60, 60))
    d.rounded_rectangle([x + s // 2, y, x + s, y + s // 2], radius=s // 4, fill=rgb, outline=(60, 60, 60))


def _figure(d: ImageDraw.ImageDraw, x: int, y: int, s: int, arms_up: bool) -> None:
    """A stick figure with its feet at (x, y), s pixels tall."""
    c = (15, 15, 15)
    lw = max(2, s // 12)
    d.ellipse([x - s // 8, y - s, x + s // 8, y - s + s // 4], fill=c)
    d.line([x, y - s + s // 4, x, y - s // 3], fill=c, width=lw)
    d.line([x, y - s // 3, x - s // 5, y], fill=c, width=lw)
    d.line([x, y - s // 3, x + s // 5, y], fill=c, width=lw)
    ay = y - s if arms_up else y - s // 2
    d.line([x - s // 4, ay, x, y - s + s // 3, x + s // 4, ay], fill=c, width=lw)


def cue(overlay: Image.Image, category: str, severity: int, rng: np.random.Generator) -> None:
    """Draw the stand-in of one moderation category at severity 2 (small, incidental) or 3 (large, central)."""
    w, h = overlay.size
    d = ImageDraw.Draw(overlay)
    big = severity >= 3
    if category == "weapons":
        if big:
            _gun(d, int(w * 0.1), int(h * 0.42), int(w * 0.8))
        else:
            _knife(d, int(w * 0.06), int(h * 0.88), int(w * 0.3))
    elif category == "violence":
        _splatter(d, rng, (0, 0, w, h) if big else (int(w * 0.6), int(h * 0.75), w, h), 28 if big else 6)
    elif category == "scam_spam":
        d.rectangle([0, int(h * 0.7), w, int(h * (0.86 if big else 0.8))], fill=(250, 220, 0))
        _text(d, (w // 2, int(h * 0.75)), "FREE $$$ CLICK", int(w * 0.1), (220, 0, 0))
        if big:
            _text(d, (w // 2, int(h * 0.83)), "win-prize.example/claim", int(w * 0.07), (0, 0, 160))
    elif category == "drugs":
        s = int(w * (0.16 if big else 0.1))
        for i in range(5 if big else 3):
            _pill(d, int(w * 0.08) + i * (s + 4), int(h * 0.85), s, (200, 40, 120))
        if big:
            y = int(h * 0.62)
            d.rectangle([int(w * 0.2), y, int(w * 0.7), y + int(w * 0.1)], fill=(225, 235, 245), outline=(60, 60, 60))
            d.rectangle([int(w * 0.7), y + int(w * 0.04), int(w * 0.8), y + int(w * 0.06)], fill=(60, 60, 60))
            d.line([int(w * 0.8), y + int(w * 0.05), int(w * 0.95), y + int(w * 0.05)], fill=(150, 150, 150), width=2)
            d.rectangle([int(w * 0.08), y + int(w * 0.03), int(w * 0.2), y + int(w * 0.07)], fill=(60, 60, 60))
    elif category == "dangerous_acts":
        roof = int(h * (0.3 if big else 0.55))
        edge = int(w * 0.55)
        d.rectangle([0, roof, edge, h], fill=(95, 85, 80), outline=(40, 40, 40))
        s = int(h * 0.14)
        if big:
            _figure(d, edge + int(w * 0.15), roof + int(h * 0.05), s, arms_up=True)
            for k in range(3):
                d.line(
                    [edge + int(w * 0.05), roof - s + k * s // 3, edge + int(w * 0.1), roof - s + k * s // 3],
                    fill=(255, 255, 255),
                    width=2,
                )
        else:
            _figure(d, edge - s // 5, roof, s, arms_up=False)
    elif category == "hate":
        # An invented stand-in sign (no real hate symbol is ever drawn): a black disc with "H8".
        if big:
            d.rectangle([0, int(h * 0.35), w, int(h * 0.65)], fill=(20, 20, 20))
            for x in (0.25, 0.75):
                _text(d, (int(w * x), h // 2), "H8", int(w * 0.22), (230, 0, 0))
        else:
            r = int(w * 0.1)
            cx, cy = int(w * 0.82), int(h * 0.88)
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(20, 20, 20))
            _text(d, (cx, cy), "H8", int(r * 1.1), (230, 0, 0))
    elif category == "harassment":
        text, size = ("WE WILL FIND YOU", 0.1) if big else ("YOU ARE UGLY", 0.09)
        _text(d, (w // 2, int(h * 0.82)), text, int(w * size), (255, 60, 60) if big else (255, 255, 255))
        if not big:
            d.line([int(w * 0.5), int(h * 0.86), int(w * 0.5), int(h * 0.93)], fill=(255, 255, 255), width=3)
    else:
        raise ValueError(f"unknown moderation category {category!r}")


def watermark(img: Image.Image, text: str) -> Image.Image:
    """A near-duplicate's corner watermark, half transparent."""
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    w, h = img.size
    ImageDraw.Draw(layer).text(
        (int(w * 0.04), int(h * 0.03)), text, font=font(int(w * 0.07)), fill=(255, 255, 255, 150)
    )
    return Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
