"""The one way in for training data: MongoDB documents → `RawColumns`."""

from mlpack.source.mongo import RawColumns, connect, load_columns, mongo_server

__all__ = ["RawColumns", "connect", "load_columns", "mongo_server"]
