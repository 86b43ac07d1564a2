"""`_id` ranges of a collection, about equal in size: how `mlpack score --engine spark` splits the work.

The MongoDB Spark connector's sample partitioner, over pymongo (its jar is not needed): sample the
matching `_id`s, let the server sort them, keep every SAMPLES_PER_RANGE-th as a boundary.
"""

from __future__ import annotations

from typing import Any

from pymongo.collection import Collection

SAMPLES_PER_RANGE = 10  # as the connector's sample partitioner


def _bracket(value: Any) -> str:
    """MongoDB compares values in a range query only within one type bracket (numbers are one)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)) or type(value).__name__ in ("Int64", "Decimal128"):
        return "number"
    return type(value).__name__


def id_ranges(collection: Collection[dict[str, Any]], query: dict[str, Any], count: int, parts: int) -> list[Any]:
    """Up to `parts` queries on `_id` that split the matching documents into about equal ranges.

    Boundaries come from a `$sample` of the `_id`s, sorted by the server, every SAMPLES_PER_RANGE-th
    kept (what the MongoDB Spark connector's sample partitioner does). `_id`s of more than one type
    are split with `$expr` comparisons, which use BSON's total order instead of type brackets.
    """
    parts = max(1, min(parts, count))
    if parts == 1:
        return [{}]
    sample = [
        d["_id"]
        for d in collection.aggregate(
            [{"$match": query}, {"$sample": {"size": parts * SAMPLES_PER_RANGE}}, {"$project": {"_id": 1}}]
            + [{"$sort": {"_id": 1}}]
        )
    ]
    step = len(sample) / parts
    bounds: list[Any] = []
    for index in range(1, parts):
        candidate = sample[int(index * step)]
        if not bounds or candidate != bounds[-1]:
            bounds.append(candidate)
    lowest = collection.find_one(query, {"_id": 1}, sort=[("_id", 1)])
    highest = collection.find_one(query, {"_id": 1}, sort=[("_id", -1)])
    one_bracket = lowest is not None and highest is not None and _bracket(lowest["_id"]) == _bracket(highest["_id"])
    edges: list[Any] = [None, *bounds, None]
    ranges = []
    for low, high in zip(edges, edges[1:]):
        if one_bracket:
            condition = {}
            if low is not None:
                condition["$gte"] = low
            if high is not None:
                condition["$lt"] = high
            ranges.append({"_id": condition} if condition else {})
        else:
            terms = []
            if low is not None:
                terms.append({"$gte": ["$_id", {"$literal": low}]})
            if high is not None:
                terms.append({"$lt": ["$_id", {"$literal": high}]})
            ranges.append({"$expr": {"$and": terms}} if terms else {})
    return ranges
