"""Feature engineering compiled into the ONNX graph: derived expressions, date parts,
text vectors and target transforms, each an sklearn transformer with a registered converter."""
