"""ncnn IR: parse, edit and write ncnn ``.param``/``.bin`` models.

>>> from ncnnpass.ir import Graph
>>> g = Graph.load("model.ncnn.param", "model.ncnn.bin")
>>> for fc in g.find("InnerProduct"):
...     fc.featmask |= 2          # keep this layer's weights in fp32 at runtime
>>> g.save("fixed.param", "fixed.bin")
"""

from .errors import (
    GraphError,
    NcnnpassError,
    ParamSemanticError,
    ParamSyntaxError,
    PatternSyntaxError,
    RuntimeBridgeError,
    SourceError,
    ToolError,
    VerificationError,
    WeightError,
)
from .graph import Blob, Graph, Layer, Problem
from .params import ParamDict
from .weights import Slot, Weight, register_weight_layout, weight_slots

__all__ = [
    "Blob", "Graph", "GraphError", "Layer", "NcnnpassError", "ParamDict", "ParamSemanticError",
    "ParamSyntaxError", "PatternSyntaxError", "Problem", "RuntimeBridgeError", "Slot", "SourceError",
    "ToolError", "VerificationError", "Weight", "WeightError", "register_weight_layout", "weight_slots",
]
