"""The one way in for training data: MongoDB documents → `RawColumns`."""

from mlpack.source.mongo import Opened, RawColumns, collect, connect, load_columns, mongo_server, open_database

__all__ = ["Opened", "RawColumns", "collect", "connect", "load_columns", "mongo_server", "open_database"]
