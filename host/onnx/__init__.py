"""ONNX in and out: export a registered architecture as an Optimum-style decoder (export.py), and
run any ONNX graph with ternary layers, the ternary nodes on a tritium backend (model.py)."""
