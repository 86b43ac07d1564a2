"""mlpack: data in MongoDB to a verified ONNX model, a model wheel and an image."""

__version__ = "0.1.0"
