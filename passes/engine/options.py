"""Typed pass options (after xDSL's ``ModulePass`` fields): a pass declares them, the spec parser fills them.

``keep-fp32[names=fc*,bits=7]`` gives text; each :class:`Option` turns its text into the declared type
(``bool``, ``int``, ``float``, ``str``, a choice among fixed words, or a ``list`` of words split at ``|``)
once, when the pass is configured, so pass code reads typed values. Values that are not text (a
``configure(names=[...])`` from Python) are checked and kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ncnnpass.ir.errors import NcnnpassError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One option: default, one-line help, type (``None``: text kept as given) and allowed choices."""

    default: Any
    help: str
    type: type | None = None
    choices: tuple[str, ...] = ()

    def __iter__(self):  # ``default, help = option`` (the older ``(default, help)`` tuples unpack the same)
        return iter((self.default, self.help))

    def parse(self, pass_name: str, key: str, value: Any) -> Any:
        """``value`` as this option's type; raises :class:`NcnnpassError` naming the pass and option."""
        def bad(expected: str) -> NcnnpassError:
            return NcnnpassError(f"{pass_name}: {key} must be {expected}, not {value!r}")

        if self.choices:
            if str(value) not in self.choices:
                raise bad(" or ".join(self.choices))
            return str(value)
        t = self.type
        if t is None or value is None or (not isinstance(value, str) and isinstance(value, t)):
            return value
        if isinstance(value, str):
            text = value.strip()
            if t is bool:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise bad("1/0, true/false, yes/no or on/off")
            if t is list:
                return [v.strip() for v in text.replace(",", "|").split("|") if v.strip()]
            try:
                return int(text, 0) if t is int else t(text)
            except ValueError:
                raise bad(_a(t)) from None
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t is list and isinstance(value, (tuple, set, frozenset)):
            return list(value)
        raise bad(_a(t))


def _a(t: type) -> str:
    return f"an {t.__name__}" if t is int else f"a {t.__name__}"


def as_option(spec: Option | tuple[Any, str]) -> Option:
    """An :class:`Option` from a declaration (an ``Option`` or an untyped ``(default, help)`` tuple)."""
    return spec if isinstance(spec, Option) else Option(spec[0], spec[1])


def option_text(value: Any) -> str:
    """An option value as spec text (lists joined with ``|``, booleans as ``1``/``0``)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return "|".join(str(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
