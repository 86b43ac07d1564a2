"""Export: the fitted pipeline to ONNX, the parity check on every row, and the model's metadata."""
