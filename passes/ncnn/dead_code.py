"""``dead-code``: layers that contribute to no protected output are removed (orphaned MemoryData, branches
left unused by other rewrites). ncnnoptimize's ``eliminate_orphaned_memorydata``, generalised."""

from __future__ import annotations

from ncnnpass.ir import Graph

from ..engine import FunctionPass, PassContext


def dead_code(graph: Graph, ctx: PassContext) -> int:
    return len(graph.cleanup())


PASS = FunctionPass("dead-code", "layers that reach no output removed (e.g. orphaned MemoryData)", dead_code)
