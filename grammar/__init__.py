"""Lark grammars shipped with ncnnpass (``*.lark``)."""

from importlib.resources import files


def load(name: str) -> str:
    """Return the text of grammar ``name`` (e.g. ``"ncnn_param.lark"``)."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
