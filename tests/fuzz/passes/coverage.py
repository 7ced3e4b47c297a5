"""Which (pass, rule) pairs a campaign fired, from the pass reports' per-rule rewrite counts."""

from __future__ import annotations

from collections import Counter

from ncnnpass.passes.engine import RulePass
from ncnnpass.passes.registry import passes


def all_rules() -> list[str]:
    """``pass/rule`` for every rule of every pass the fuzzer draws from (a function pass counts as one rule;
    terminal passes that measure on a device target are not fuzzed: :func:`.sequences.fuzzed_passes`)."""
    out = []
    for p in passes().values():
        if p.terminal:
            continue
        if isinstance(p, RulePass):
            out += [f"{p.name}/{r.name}" for r in p.rules]
        else:
            out.append(f"{p.name}/{p.name}")
    return out


def summary(fired: Counter, label: str) -> tuple[float, list[str], str]:
    """(fraction fired, rules never fired, a printable table) for counts ``fired`` of ``pass/rule``."""
    rules = all_rules()
    never = [r for r in rules if not fired.get(r)]
    share = (len(rules) - len(never)) / len(rules) if rules else 1.0
    lines = [f"coverage ({label}): {len(rules) - len(never)}/{len(rules)} rules fired ({share:.0%})"]
    for r in rules:
        lines.append(f"  {fired.get(r, 0):>9}  {r}")
    if never:
        lines.append("  never fired: " + ", ".join(never))
    return share, never, "\n".join(lines)
