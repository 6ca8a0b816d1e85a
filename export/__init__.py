"""grm.export: GRM as a static-shape ONNX model (FP32/FP16) or TensorRT engine, proven equal to PyTorch.

Entry points: :func:`grm.export.pipeline.run_export` (what ``grm-export`` runs),
:func:`grm.export.to_onnx.export_onnx`, :func:`grm.export.parity.compare`,
:func:`grm.export.tensorrt_build.build_engine` and the weights store in :mod:`grm.export.weights`.
Submodules import torch/onnx on use; ``import grm.export`` alone is cheap.
"""
