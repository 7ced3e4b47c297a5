"""Fonts for the built-in text: DejaVu (Latin) and CJK fonts from Debian's packages.

Looked up by file name under the system font folders (and ``$NCNNPASS_FONTS``):

| script | files (Debian package) |
|---|---|
| Latin | DejaVu Sans/Serif/Mono/Condensed, regular and bold (``fonts-dejavu-core``) |
| CJK | WenQuanYi Micro Hei (``fonts-wqy-microhei``), Zen Hei (``fonts-wqy-zenhei``), AR PL UMing and UKai (``fonts-arphic-uming``, ``fonts-arphic-ukai``) |

The CJK fonts also carry Latin letters and digits, so Chinese lines may mix them. ``.ci/install`` installs
all of them; without any font of a script :func:`fonts_for` raises :class:`FontsMissing` naming the packages.
"""

from __future__ import annotations

import functools
import glob
import os
from dataclasses import dataclass

from ncnnpass.ir.errors import NcnnpassError

__all__ = ["FontFace", "FontsMissing", "LATIN_FONTS", "CJK_FONTS", "find_font", "fonts_for", "load_font"]


@dataclass(frozen=True)
class FontFace:
    name: str  #: file name (``DejaVuSans.ttf``) and, for collections, ``#index``
    path: str
    index: int = 0

    def __str__(self) -> str:
        return self.name


LATIN_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
               "DejaVuSansMono.ttf", "DejaVuSansCondensed.ttf")
# (file, face index in the collection)
CJK_FONTS = (("wqy-microhei.ttc", 0), ("wqy-zenhei.ttc", 0), ("wqy-zenhei.ttc", 2), ("uming.ttc", 0),
             ("ukai.ttc", 0))
PACKAGES = {"latin": "fonts-dejavu-core", "cjk": "fonts-wqy-microhei fonts-wqy-zenhei fonts-arphic-uming "
                                                 "fonts-arphic-ukai"}


class FontsMissing(NcnnpassError):
    """No font of a script is installed."""


def _dirs() -> list[str]:
    extra = os.environ.get("NCNNPASS_FONTS")
    return ([extra] if extra else []) + ["/usr/share/fonts", "/usr/local/share/fonts",
                                         os.path.expanduser("~/.local/share/fonts")]


@functools.cache
def find_font(file_name: str) -> str | None:
    """Path of the first font file called ``file_name`` under the font folders, or None."""
    for d in _dirs():
        hits = sorted(glob.glob(os.path.join(glob.escape(d), "**", file_name), recursive=True))
        if hits:
            return hits[0]
    return None


@functools.cache
def fonts_for(script: str) -> tuple[FontFace, ...]:
    """The installed faces of ``script`` (``latin`` or ``cjk``); raises :class:`FontsMissing` when none."""
    if script == "latin":
        wanted = [(f, 0) for f in LATIN_FONTS]
    elif script == "cjk":
        wanted = list(CJK_FONTS)
    else:
        raise ValueError(f"unknown script {script!r}")
    faces = []
    for file_name, index in wanted:
        path = find_font(file_name)
        if path:
            faces.append(FontFace(file_name + (f"#{index}" if index else ""), path, index))
    if not faces:
        names = ", ".join(sorted({f for f, _ in wanted}))
        raise FontsMissing(f"no {script.upper() if script == 'cjk' else 'Latin'} font for the built-in text lines "
                           f"(looked for {names} under {', '.join(_dirs())}): install Debian's {PACKAGES[script]} "
                           f"(bash .ci/install does), or give --images")
    return tuple(faces)


@functools.lru_cache(maxsize=256)
def load_font(face: FontFace, size: int):
    """A Pillow font of ``face`` at ``size`` pixels (cached)."""
    from PIL import ImageFont

    return ImageFont.truetype(face.path, size, index=face.index)
