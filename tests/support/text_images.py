"""Render text-line images with known labels (Pillow + a TrueType font) for recognition tests."""

from __future__ import annotations

import glob
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# Letters and digits of the PP-OCR dictionaries, without glyphs a recognizer may legitimately confuse
# (0/O/o, 1/l/I, case pairs that look alike such as c/C, s/S).
SAFE_CHARS = "23456789ABDEFGHJKLMNQRTYabdefghijkmnqrty"

_FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf")


def find_font(name: str = "DejaVuSans.ttf") -> str | None:
    """Path of a system TrueType font, or None."""
    for pattern in (f"/usr/share/fonts/**/{name}", f"/usr/local/share/fonts/**/{name}"):
        hits = sorted(glob.glob(pattern, recursive=True))
        if hits:
            return hits[0]
    return None


def load_font(size: int, name: str = "DejaVuSans.ttf") -> ImageFont.ImageFont:
    path = find_font(name)
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)  # Pillow >= 10.1 ships a scalable default font


def render_line(text: str, size: int = 32, font_name: str = "DejaVuSans.ttf", pad: int = 8,
                fg: int = 20, bg: int = 245) -> Image.Image:
    """A grey-on-white text line, tightly cropped with ``pad`` pixels of margin."""
    font = load_font(size, font_name)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), (bg, bg, bg))
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=(fg, fg, fg))
    return img


def random_texts(n: int, seed: int = 0, min_len: int = 3, max_len: int = 10) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(SAFE_CHARS) for _ in range(rng.randint(min_len, max_len))) for _ in range(n)]


def write_dataset(root: Path, texts: list[str], seed: int = 0, name: str = "train.txt",
                  subdir: str = "images") -> Path:
    """Render ``texts`` under ``root/subdir`` and write a PaddleOCR label file ``root/name``."""
    rng = random.Random(seed)
    (root / subdir).mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(texts):
        font = _FONT_NAMES[rng.randrange(len(_FONT_NAMES))] if find_font() else "DejaVuSans.ttf"
        img = render_line(text, size=rng.randint(26, 40), font_name=font)
        rel = f"{subdir}/{i:04d}.png"
        img.save(root / rel)
        lines.append(f"{rel}\t{text}\n")
    label = root / name
    label.write_text("".join(lines), encoding="utf-8")
    return label
