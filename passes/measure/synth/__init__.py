"""Built-in data, offline and licence-clean: rendered text lines and document pages (:mod:`.builtin`) from
real word lists (:mod:`.words`, :mod:`.texts`) in Debian's fonts (:mod:`.fonts`), degraded like photos and
scans (:mod:`.render`)."""

from .builtin import (
    DEFAULT_LINES,
    DEFAULT_PAGES,
    builtin_data,
    builtin_indexed,
    builtin_key,
    builtin_lines,
    builtin_pages,
)
from .fonts import FontsMissing
from .words import WordListMissing

__all__ = ["builtin_data", "builtin_indexed", "builtin_key", "builtin_lines", "builtin_pages", "DEFAULT_LINES",
           "DEFAULT_PAGES", "FontsMissing", "WordListMissing"]
