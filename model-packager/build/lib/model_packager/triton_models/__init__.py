"""Files published into Triton model version folders (the python backend loads them as model.py).

They run inside Triton's python-backend stub, not in this package: standard library and numpy
only (plus onnxruntime for onnx_model.py), and imports relative to their own folder.
"""
