"""A rewrite rule: compiled (:mod:`.compile`), matched (:mod:`.match`), applied by the :mod:`.rewriter`.

Outputs of a match keep their names, so outside consumers and protected outputs are untouched.
Replacement layers whose outputs end up unused are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ncnnpass.ir import Layer
from ncnnpass.ir.errors import GraphError, PatternSyntaxError

from .compile import CompiledRule
from .match import Match, RuleMatching
from .rewriter import Rewriter
from .syntax import ParamTest, PatLine, parse_rules


class Rule(CompiledRule, RuleMatching):
    """One compiled rewrite rule. Build with :func:`compile_rules`; ``match(layer, ctx)`` tries it with
    ``layer`` as the root, ``apply(match)`` rewrites (through the run's :class:`~.rewriter.Rewriter`)."""

    def apply(self, m: Match) -> list[Layer]:
        """Replace the matched layers; returns the new layers (in order)."""
        return (m.ctx.rewriter or Rewriter(m.ctx)).apply(self, m)


def compile_rules(text: str, hooks: dict[str, Callable[..., Any]] | None = None,
                  file: str = "<pattern>", match_only: bool = False) -> list[Rule]:
    """Parse and check pattern text; returns its rules in file order. ``match_only`` rules have no
    ``replace:`` section (used to select layers, e.g. by ``keep-fp32``)."""
    rules = []
    seen: set[str] = set()
    for i, rt in enumerate(parse_rules(text, file, require_replace=not match_only)):
        if rt.name in seen:
            raise PatternSyntaxError(f"rule {rt.name!r} is defined twice", file, rt.pos.line, rt.pos.column)
        seen.add(rt.name)
        rules.append(Rule(rt, hooks, file, i, match_only))
    return rules


def sort_rules(rules: Iterable[Rule]) -> list[Rule]:
    """Rules in the order they are tried on a root: higher benefit first, then file order."""
    return sorted(rules, key=lambda r: (-r.benefit, r.order))


__all__ = ["GraphError", "Match", "ParamTest", "PatLine", "Rule", "compile_rules", "sort_rules"]
