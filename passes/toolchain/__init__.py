"""Tool built on the passes: wrappers around the external converters (pnnx, onnxsim, paddle2onnx) and
the whole PaddleOCR → ONNX → ncnn conversion.

Every wrapper runs its tool through :func:`ncnnpass.ir.runtime.external.run_tool` (logged with its timing
on the ``ncnnpass.toolchain`` logger) and raises :class:`ncnnpass.ir.errors.ToolError` when a tool is
missing or fails.
"""
