"""The one way in for training data: MongoDB documents → `RawColumns`."""

from mlpack.source.mongo import RawColumns, collect, connect, load_columns, mongo_server

__all__ = ["RawColumns", "collect", "connect", "load_columns", "mongo_server"]
