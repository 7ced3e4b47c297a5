"""Passes that edit ONNX models (via onnx-graphsurgeon) before they are converted to ncnn."""
