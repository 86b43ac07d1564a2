"""Load a mongoexport file (Extended JSON, one document per line) into an empty collection."""

from __future__ import annotations

from pathlib import Path

from bson import json_util
from bson.errors import InvalidBSON
from pymongo.collection import Collection

from mlpack.errors import ConfigError, outside

BATCH = 1000


def seed_collection(collection: Collection, path: Path) -> int:
    """Insert the file's documents if the collection holds none; return how many were inserted."""
    if collection.find_one({}, projection={"_id": 1}) is not None:
        return 0
    if not path.is_file():
        raise ConfigError(f"[source].seed file not found: {path}")
    # Parse everything first, so a bad line leaves the collection untouched rather than half-seeded.
    documents = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                document = json_util.loads(line)
            except (ValueError, InvalidBSON, RecursionError) as exc:
                raise ConfigError(f"[source].seed {path}:{number}: not a JSON document: {exc}") from None
            if not isinstance(document, dict):
                raise ConfigError(f"[source].seed {path}:{number}: expected a JSON object")
            documents.append(document)
    # A document MongoDB cannot store (an integer past BSON's 64 bits) is a ConfigError naming the seed.
    with outside("MongoDB", action=f"seeding {collection.full_name} from [source].seed {path}"):
        for start in range(0, len(documents), BATCH):
            collection.insert_many(documents[start : start + BATCH], ordered=True)
    return len(documents)
