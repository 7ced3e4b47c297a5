"""Rewrite passes, the engine: pattern language (``grammar/pattern.lark``), matcher, passes and pass
manager.

>>> from ncnnpass.passes.engine import RulePass
>>> relu_after_relu = RulePass("drop-double-relu", "ReLU after ReLU is a no-op", '''
... rule drop-double-relu
... match:
...   ReLU a 1 1 x t  0=0
...   ReLU b 1 1 t y  0=0
... replace:
...   ReLU a 1 1 x y
... ''')
"""

from ncnnpass.ir.runtime.shapes import declared_input_shapes, normalize_input_shapes

from .builtins import BUILTINS, ELEMENTWISE_TYPES, is_elementwise
from .context import PassContext
from .expr import EvalError, Unknown
from .manager import EXACT, FunctionPass, Pass, PassReport, PassStat, RulePass, run_passes, run_rules
from .options import Option
from .rule import Match, Rule, compile_rules

__all__ = [
    "BUILTINS", "ELEMENTWISE_TYPES", "EXACT", "EvalError", "FunctionPass", "Match", "Option", "Pass", "PassContext", "PassReport",
    "PassStat", "Rule", "RulePass", "Unknown", "compile_rules", "declared_input_shapes", "is_elementwise",
    "normalize_input_shapes", "run_passes", "run_rules",
]
