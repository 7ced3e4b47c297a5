"""Typed pass options (after xDSL's ``ModulePass`` fields): a pass declares them, the spec parser fills them.

``keep-fp32[names=fc*,bits=7]`` gives text; each :class:`Option` turns its text into the declared type
(``bool``, ``int``, ``float``, ``str``, a choice among fixed words, or a ``list`` of words split at ``|``)
once, when the pass is configured, so pass code reads typed values. Values that are not text (a
``configure(names=[...])`` from Python) are checked and kept as they are. An option may also declare a
``convert`` function (its own text syntax) and a ``check`` (a value that has the type but makes no sense:
a zero count, an empty list); every bad value raises :class:`NcnnpassError` naming the pass and option,
before any pass runs (see :func:`ncnnpass.passes.resolve_passes` and :meth:`.manager.Pass.validate`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ncnnpass.ir.errors import NcnnpassError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


Check = Callable[[Any], "str | None"]  # a typed value -> None, or what the value must be instead


@dataclass(frozen=True)
class Option:
    """One option: default, one-line help, type (``None``: text kept as given), allowed choices, an optional
    ``convert`` (text or value -> typed value; raises ``ValueError``/``NcnnpassError`` on bad input) and an
    optional ``check`` of the typed value (see :func:`positive`, :func:`nonempty`, :func:`in_range`)."""

    default: Any
    help: str
    type: type | None = None
    choices: tuple[str, ...] = ()
    check: Check | None = None
    convert: Callable[[Any], Any] | None = None

    def __iter__(self):  # ``default, help = option`` (the older ``(default, help)`` tuples unpack the same)
        return iter((self.default, self.help))

    def parse(self, pass_name: str, key: str, value: Any) -> Any:
        """``value`` as this option's type; raises :class:`NcnnpassError` naming the pass and option."""
        typed = self._typed(pass_name, key, value)
        if self.check is not None and typed is not None:
            expected = self.check(typed)
            if expected:
                raise NcnnpassError(f"{pass_name}: {key} must be {expected}, not {value!r}")
        return typed

    def _typed(self, pass_name: str, key: str, value: Any) -> Any:
        def bad(expected: str) -> NcnnpassError:
            return NcnnpassError(f"{pass_name}: {key} must be {expected}, not {value!r}")

        if self.choices:
            if str(value) not in self.choices:
                raise bad(" or ".join(self.choices))
            return str(value)
        if self.convert is not None:
            try:
                return self.convert(value)
            except NcnnpassError as exc:
                if str(exc).startswith(f"{pass_name}:"):
                    raise
                raise NcnnpassError(f"{pass_name}: {key}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise bad(str(exc) or "valid") from None
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
        if t is bool and isinstance(value, int) and value in (0, 1):
            return bool(value)
        if t is list and isinstance(value, (tuple, set, frozenset)):
            return list(value)
        raise bad(_a(t))


def positive(value: Any) -> str | None:
    """A :data:`Check`: numbers above zero."""
    return None if value > 0 else "positive"


def nonempty(value: Any) -> str | None:
    """A :data:`Check`: a list (or text) with at least one item."""
    return None if len(value) else "non-empty"


def in_range(lo: float, hi: float) -> Check:
    """A :data:`Check`: ``lo <= value <= hi``."""
    def check(value: Any) -> str | None:
        return None if lo <= value <= hi else f"between {lo} and {hi}"

    return check


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
