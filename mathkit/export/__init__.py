"""Exports for the edge: ONNX graphs with their KV cache (fp32 and int8) and GGUF files for llama.cpp.

``python -m mathkit export`` is the command; :func:`mathkit.export.onnx_export.export_onnx` and
``mathkit.export.gguf_export.export_gguf`` do the work, and :mod:`mathkit.inference` runs the results.
"""
