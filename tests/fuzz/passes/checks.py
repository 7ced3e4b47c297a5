"""What must hold for a graph after any pass sequence, behind one function.

:func:`graph_problems` runs the IR verifier (``ncnnpass.ir.verifier.verify_graph``) when that module
exists, else ``Graph.check()``; and always the round trips: ``copy()`` writes the same ``.param`` text and
``.bin`` bytes as the graph, and so does the graph loaded back from what it writes.
"""

from __future__ import annotations

import importlib

from ncnnpass.ir import Graph


def _verifier():
    try:
        return importlib.import_module("ncnnpass.ir.verifier").verify_graph
    except (ImportError, AttributeError):
        return None


def graph_problems(graph: Graph) -> list[str]:
    """Everything wrong with ``graph`` (empty when it is sound)."""
    verify = _verifier()
    found = [str(p) for p in (verify(graph) if verify is not None else graph.check())]
    text, data = graph.to_param_text(), graph.to_bin_bytes()
    twin = graph.copy()
    if twin.to_param_text() != text:
        found.append("copy() writes different .param text")
    if twin.to_bin_bytes() != data:
        found.append("copy() writes different .bin bytes")
    back = Graph.from_text(text, data, file="<written>")
    if back.to_param_text() != text:
        found.append("the written .param, loaded and written again, differs")
    if back.to_bin_bytes() != data:
        found.append("the written .bin, loaded and written again, differs")
    return found


def verifier_in_use() -> bool:
    return _verifier() is not None
