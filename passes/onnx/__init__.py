"""Rewrite passes on ONNX models (via onnx-graphsurgeon) before they are converted to ncnn."""
