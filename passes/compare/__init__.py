"""Tool built on the passes, precision forensics: layer-by-layer comparison of an ONNX model
(onnxruntime) and its ncnn conversion.

>>> from ncnnpass.passes.compare import compare_models
>>> report = compare_models("rec.onnx", "rec.ncnn.param", "rec.ncnn.bin", fix=True)
>>> from ncnnpass.passes.compare.render import render_text
>>> print(render_text(report))
"""

from .core import ModelMismatchError, compare_graph, compare_models
from .inputs import InputError, PreparedInput, prepare_input
from .mapping import BlobMapping, Layout, MappingResult, candidate_layouts, map_blobs
from .metrics import Metrics, compute_metrics
from .ncnn_side import DEFAULT_SWEEP, PHONE_SWEEP, NcnnModel, NcnnRunError, OptionSet, parse_option_sets
from .phone_rows import phone_rows
from .reference import OnnxModelError, OnnxReference
from .report import AdviceItem, Attribution, CompareReport, LayerRow, OptionRun, RecCheck
from .text_lines import LineModel, TextLinesReport, text_lines

__all__ = [
    "AdviceItem", "Attribution", "BlobMapping", "CompareReport", "DEFAULT_SWEEP", "InputError", "LayerRow",
    "LineModel", "Layout", "MappingResult", "Metrics", "ModelMismatchError", "NcnnModel", "NcnnRunError",
    "OnnxModelError", "OnnxReference", "OptionRun", "OptionSet", "PHONE_SWEEP", "PreparedInput", "RecCheck",
    "TextLinesReport", "candidate_layouts", "compare_graph", "compare_models", "compute_metrics", "map_blobs",
    "parse_option_sets", "phone_rows", "prepare_input", "text_lines",
]
