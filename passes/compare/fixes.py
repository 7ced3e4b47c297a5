"""Apply the advice to a copy of the graph (``compare --fix``).

Passes run through ncnnpass's pass manager (``ncnnpass.passes.apply_passes``). ``keep-fp32`` on
named layers is ncnn's per-layer feature mask (param 31); when the pass manager cannot target those
layers, the mask is set directly, which is what the pass does. If the pass manager is not available
at all, every blamed layer gets the mask instead (still a valid repair, one layer at a time).
"""

from __future__ import annotations

import inspect

from ncnnpass.ir import Graph

from .report import AdviceItem

__all__ = ["apply_advice", "pass_manager"]


def pass_manager():
    """``ncnnpass.passes.apply_passes`` if the pass package provides it, else ``None``."""
    try:
        from ncnnpass.passes import apply_passes
    except ImportError:
        return None
    return apply_passes


def _describe(result) -> str:
    text = _describe1(result)
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return lines[0] + "".join("\n    " + ln for ln in lines[1:]) if lines else ""


def _describe1(result) -> str:
    if result is None:
        return ""
    for attr in ("summary", "describe"):
        f = getattr(result, attr, None)
        if callable(f):
            try:
                return str(f())
            except TypeError:
                pass
        elif isinstance(f, str):
            return f
    return str(result)


def _call(apply_passes, graph: Graph, specs: list[str], input_shape):
    kwargs = {}
    try:
        if input_shape is not None and "input_shape" in inspect.signature(apply_passes).parameters:
            kwargs["input_shape"] = tuple(input_shape)
    except (TypeError, ValueError):
        pass
    return apply_passes(graph, specs, **kwargs)


_SPEC_UNSAFE = set(",|[]=")


def apply_advice(graph: Graph, advice: list[AdviceItem], input_shape: tuple[int, ...] | None = None
                 ) -> tuple[Graph, list[str]]:
    """A fixed copy of ``graph`` and a log of what was done (``input_shape``: ncnn (c, h, w) of the input)."""
    g = graph.copy()
    log: list[str] = []
    apply_passes = pass_manager()
    for item in advice:
        if item.action == "gap-fc-to-conv":
            result, error = None, None
            if apply_passes is not None:
                trial = g.copy()
                try:
                    result = _call(apply_passes, trial, ["gap-fc-to-conv"], input_shape)
                    g = trial
                except Exception as exc:  # the pass manager failed: fall back to the mask below
                    error = f"{type(exc).__name__}: {exc}"
            if apply_passes is not None and error is None:
                names = {ly.name: ly for ly in g.layers}
                gone = [n for n in item.layers if n not in names or names[n].type != "InnerProduct"]
                log.append(f"gap-fc-to-conv: {_describe(result) or 'applied'}"
                           + (f" (rewrote {', '.join(gone)})" if gone else ""))
                left = [n for n in item.layers if n in names and names[n].type == "InnerProduct"]
                if left:
                    for n in left:
                        names[n].featmask |= 2
                    log.append(f"gap-fc-to-conv left {', '.join(left)} as InnerProduct: set 31=2 on them instead")
            else:
                for n in item.layers:
                    g.layer(n).featmask |= 2
                why = f"failed ({error})" if error else "is not available (no ncnnpass.passes.apply_passes)"
                log.append(f"gap-fc-to-conv {why}: set the feature mask 31=2 (fp16 storage off) on "
                           f"{', '.join(item.layers)} instead")
        elif item.action == "keep-fp32" and item.featmask:
            present = {ly.name for ly in g.layers}
            names = [n for n in item.layers if n in present]
            if not names:
                continue
            done = None
            if apply_passes is not None and not any(set(n) & _SPEC_UNSAFE for n in names):
                spec = f"keep-fp32[names={'|'.join(names)},bits={item.featmask}]"
                trial = g.copy()
                try:
                    done = f"{spec}: {_describe(_call(apply_passes, trial, [spec], input_shape)) or 'applied'}"
                    g = trial
                except Exception as exc:  # the pass manager failed: set the mask directly
                    log.append(f"keep-fp32 pass failed ({type(exc).__name__}: {exc}); setting the mask directly")
            if done is None:
                for n in names:
                    g.layer(n).featmask |= item.featmask
                done = f"set 31={item.featmask} on {', '.join(names)}"
            log.append(f"keep-fp32: {done}")
    return g, log
