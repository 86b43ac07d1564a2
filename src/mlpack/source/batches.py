"""Documents to columns a batch at a time, and batches fetched from the server while the last one is read.

The runtime's `lookup` is the reading of a field (training reads as every prediction path does);
here it is applied to a batch of documents at once, one list comprehension per level of a dotted
path instead of a function call per document and field, which is most of what reading cost.
"""

from __future__ import annotations

import itertools
import operator
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from mlpack.runtime import ABSENT, lookup
from mlpack.source.columns import Column

Batch = TypeVar("Batch")
# Raw batches waiting to be decoded: enough to ride out the server's pauses, few enough that the
# memory they hold stays a few MiB.
PREFETCH = 4
_NO_FIELDS: dict[str, Any] = {}
_DICTS = itertools.repeat(dict)


def _child(node: Any, part: str) -> Any:
    return node.get(part, ABSENT) if isinstance(node, Mapping) else ABSENT


def _children(nodes: list[Any], part: str) -> list[Any]:
    """`part` of each node, ABSENT where there is none; a node that is no sub-document (null, 5, a
    list, ABSENT) has no fields, as in lookup."""
    try:  # every node a dict (the usual batch): dict.get through map, no Python frame per document
        return list(map(dict.get, nodes, itertools.repeat(part), itertools.repeat(ABSENT)))
    except TypeError:
        pass
    # A few nodes are no dict (a parent absent from some documents): those alone are read one by one.
    odd = list(itertools.compress(range(len(nodes)), map(operator.not_, map(isinstance, nodes, _DICTS))))
    patched = list(nodes)
    for index in odd:
        patched[index] = _NO_FIELDS
    values = list(map(dict.get, patched, itertools.repeat(part), itertools.repeat(ABSENT)))
    for index in odd:
        values[index] = _child(nodes[index], part)
    return values


def _absent_as_none(values: list[Any]) -> list[Any]:
    """The values with each ABSENT replaced by None (in place: the list is the batch's own)."""
    for index in itertools.compress(range(len(values)), map(operator.is_, values, itertools.repeat(ABSENT))):
        values[index] = None
    return values


def _count_absent(values: list[Any]) -> int:
    try:  # list.count: C, an identity test first; a value whose == is elementwise (an array) cannot answer it
        return values.count(ABSENT)
    except (TypeError, ValueError):
        return sum(map(operator.is_, values, itertools.repeat(ABSENT)))


class BatchReader:
    """The columns of `paths` from batches of documents: `lookup` applied to a batch at a time.

    A parent shared by several paths ("billing" of "billing.method" and "billing.charges") is
    looked up once per batch.
    """

    def __init__(self, paths: list[str], *, projected: bool = False) -> None:
        """`projected`: the documents are a server's answer to a projection on `paths`. A projection
        reads a dotted path through sub-documents only, so a literal dotted key ({"billing.method":
        ...}) never comes back, and lookup's first try, the whole path as one key, is not made."""
        self.paths = [(path, tuple(path.split("."))) for path in paths]
        self.projected = projected

    def field_values(
        self,
        documents: list[Mapping[str, Any]],
        path: str,
        parts: tuple[str, ...],
        parents: dict[tuple[str, ...], list[Any]],
    ) -> list[Any]:
        """`lookup(document, path, parts)` for each document (ABSENT where it has no such field)."""
        if len(parts) == 1:
            return _children(documents, path)
        if not self.projected:
            values = _children(documents, path)  # the whole path as one key: lookup tries that first
            if _count_absent(values) != len(values):  # a literal dotted key ("billing.method": ...) somewhere
                return [lookup(document, path, parts) for document in documents]
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            if prefix not in parents:
                parents[prefix] = _children(parents[prefix[:-1]] if depth > 1 else documents, prefix[-1])
        return _children(parents[parts[:-1]], parts[-1])

    def add(
        self, documents: list[Mapping[str, Any]], ids: Column, values: dict[str, Column], present: dict[str, int]
    ) -> None:
        """Append one batch of documents to the columns: absent and null are None, `present` counts the rest."""
        found_ids = _children(documents, "_id")
        ids.add_batch(_absent_as_none(found_ids) if _count_absent(found_ids) else found_ids)
        parents: dict[tuple[str, ...], list[Any]] = {}
        for path, parts in self.paths:
            found = self.field_values(documents, path, parts, parents)
            absent = _count_absent(found)
            if absent:
                found = _absent_as_none(found)
            present[path] += len(found) - absent
            values[path].add_batch(found)


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def prefetched(open_batches: Callable[[], AbstractContextManager[Iterable[Batch]]]) -> Iterator[Batch]:
    """The batches of `open_batches()` (a cursor), read in a thread up to PREFETCH ahead.

    The next batch crosses the network while this one is decoded (a socket read releases the GIL).
    An error in the thread is raised here, as the cursor would have raised it; leaving the loop
    early (an error, Ctrl-C) stops the thread, which closes the cursor.
    """
    slots: queue.Queue[Any] = queue.Queue(PREFETCH)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        try:
            with open_batches() as batches:
                for batch in batches:
                    if not put(batch):
                        return
        except BaseException as exc:  # handed to the reader, which raises it
            put(_Failed(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=fetch, name="mlpack-fetch", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=1.0)
