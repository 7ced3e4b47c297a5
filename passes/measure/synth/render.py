"""Rendering text and degrading it like a camera or a scanner would, all from a seeded generator.

- :func:`render_text`: dark text on a light background (Pillow), cropped to the ink with a margin;
- :class:`Degradation`: rotation and perspective (small), Gaussian blur, resolution loss, noise, JPEG,
  drawn by :meth:`Degradation.draw` and applied by :meth:`Degradation.apply` (which also moves given
  points along, for page boxes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .fonts import FontFace, load_font

__all__ = ["render_text", "Degradation"]


def render_text(text: str, face: FontFace | None, size: int, fg: tuple[int, int, int] | int = 20,
                bg: tuple[int, int, int] | int = 245, pad: int | tuple[int, int, int, int] = 6) -> np.ndarray:
    """The text as a BGR uint8 image cropped to its ink box plus ``pad`` (left, top, right, bottom) pixels.
    ``face`` None: Pillow's built-in scalable font."""
    from PIL import Image, ImageDraw, ImageFont

    font = load_font(face, size) if face is not None else ImageFont.load_default(size)
    fg3 = (fg, fg, fg) if isinstance(fg, int) else tuple(fg)
    bg3 = (bg, bg, bg) if isinstance(bg, int) else tuple(bg)
    pl, pt, pr, pb = (pad,) * 4 if isinstance(pad, int) else pad
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (max(1, right - left) + pl + pr, max(1, bottom - top) + pt + pb), bg3)
    ImageDraw.Draw(img).text((pl - left, pt - top), text, font=font, fill=fg3)
    return np.ascontiguousarray(np.asarray(img)[:, :, ::-1])


@dataclass(frozen=True)
class Degradation:
    angle: float = 0.0  #: degrees, counter-clockwise
    perspective: float = 0.0  #: corner jitter, share of the smaller side
    blur: float = 0.0  #: Gaussian sigma, pixels (0: none)
    downscale: float = 1.0  #: resolution loss: shrink by this factor and scale back (1: none)
    noise: float = 0.0  #: Gaussian noise sigma, grey levels
    jpeg: int = 0  #: JPEG quality (0: not compressed)
    seed: int = 0  #: for the noise and the perspective jitter

    @classmethod
    def draw(cls, rng: np.random.Generator, max_angle: float = 2.0) -> Degradation:
        return cls(angle=round(float(rng.uniform(-max_angle, max_angle)), 2) if rng.random() < 0.6 else 0.0,
                   perspective=round(float(rng.uniform(0.0, 0.04)), 3) if rng.random() < 0.4 else 0.0,
                   blur=round(float(rng.uniform(0.3, 1.3)), 2) if rng.random() < 0.5 else 0.0,
                   downscale=round(float(rng.uniform(0.45, 0.85)), 2) if rng.random() < 0.25 else 1.0,
                   noise=round(float(rng.uniform(1.0, 10.0)), 1) if rng.random() < 0.6 else 0.0,
                   jpeg=int(rng.integers(30, 96)) if rng.random() < 0.6 else 0,
                   seed=int(rng.integers(2**31)))

    def params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (0, 0.0, 1.0) or k == "seed"}

    def _geometry(self, h: int, w: int) -> tuple[np.ndarray, int, int]:
        """3x3 matrix (rotation about the centre + corner jitter) and the output size that holds it all."""
        rng = np.random.default_rng(self.seed)
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dst = src.copy()
        if self.perspective:
            dst += rng.uniform(-1, 1, (4, 2)).astype(np.float32) * self.perspective * min(h, w)
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), self.angle, 1.0)
        dst = cv2.transform(dst[None], rot)[0]
        x0, y0 = dst.min(axis=0)
        x1, y1 = dst.max(axis=0)
        dst -= (x0, y0)
        return cv2.getPerspectiveTransform(src, dst.astype(np.float32)), int(np.ceil(x1 - x0)), int(np.ceil(y1 - y0))

    def apply(self, img: np.ndarray, points: np.ndarray | None = None, border: tuple[int, int, int] | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """The degraded image and the moved ``points`` (any N x 2). ``border``: fill colour for the corners
        the rotation uncovers (default: replicate the edge)."""
        out = img
        if self.angle or self.perspective:
            m, w, h = self._geometry(*img.shape[:2])
            mode = cv2.BORDER_CONSTANT if border is not None else cv2.BORDER_REPLICATE
            out = cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=mode,
                                      borderValue=border or 0)
            if points is not None:
                points = cv2.perspectiveTransform(np.asarray(points, np.float32).reshape(-1, 1, 2), m).reshape(-1, 2)
        if self.blur:
            out = cv2.GaussianBlur(out, (0, 0), self.blur)
        if self.downscale < 1.0:
            h, w = out.shape[:2]
            small = cv2.resize(out, (max(1, int(w * self.downscale)), max(1, int(h * self.downscale))),
                               interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.noise:
            rng = np.random.default_rng(self.seed + 1)
            out = np.clip(out.astype(np.float32) + rng.normal(0.0, self.noise, out.shape), 0, 255).astype(np.uint8)
        if self.jpeg:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg])
            if ok:
                out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return np.ascontiguousarray(out), points
