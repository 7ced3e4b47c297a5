"""Rewrite passes over the ncnn IR and the ONNX/Paddle side."""
