"""A column of ObjectIds (the usual `_id`) is held as 12 bytes a value and reads back as the ObjectIds.

At a million documents the ids, as Python objects, weighed as much as the twelve projected fields in
float64 and were held from the load to the end of training.
"""

from __future__ import annotations

import pickle
import random
import tracemalloc

import bson
from bson import ObjectId

from mlpack.source import RawColumns
from mlpack.source.columns import Column
from mlpack.source.order import id_order
from mlpack.source.rawbson import RawBatches

ROWS = 20_000


def _ids(rows: int, seed: int = 0) -> list[ObjectId]:
    generator = random.Random(seed)
    # Bytes that end in zeros and differ only late: neither may be lost or misordered.
    ids = [ObjectId(generator.randbytes(10) + b"\x00\x00") for _ in range(rows - 4)]
    return ids + [
        ObjectId(b"\x00" * 12),
        ObjectId(b"\xff" * 12),
        ObjectId(b"\x01" * 11 + b"\x02"),
        ObjectId(b"\x01" * 12),
    ]


def _held(make: object) -> tuple[int, Column]:
    tracemalloc.start()
    try:
        column = make()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[0], column
    finally:
        tracemalloc.stop()


def test_decoded_ids_are_held_as_their_bytes() -> None:
    held, column = _held(lambda: Column(_ids(ROWS)))
    assert held < 16 * ROWS  # 12 bytes a value; as ObjectIds in a list, about 93
    assert column.tolist() == _ids(ROWS)


def test_ids_read_from_raw_bson_are_held_as_their_bytes() -> None:
    batch = b"".join(bson.encode({"_id": oid}) for oid in _ids(ROWS))

    def read() -> Column:
        raw = RawColumns.of([])
        assert RawBatches([]).add(batch, raw.ids, raw.values, raw.present)
        return raw.ids  # type: ignore[return-value]

    held, ids = _held(read)
    assert held < 16 * ROWS + len(batch) // 4  # the batch's bytes were not all freed while traced
    assert ids.tolist() == _ids(ROWS)


def test_ids_read_back_as_the_objectids() -> None:
    ids = _ids(ROWS)
    column = Column()
    for start in range(0, ROWS, 3_000):
        column.add_batch(ids[start : start + 3_000])
    assert [type(value) for value in column] == [ObjectId] * ROWS and list(column) == ids
    assert column[7] == ids[7] and column[-1] == ids[-1] and column[ROWS - 4] == ObjectId(b"\x00" * 12)
    assert column[2_990:6_010] == ids[2_990:6_010] and column[5:5] == [] and column[::7] == ids[::7]
    positions = list(range(ROWS))
    random.Random(1).shuffle(positions)
    assert column.take(positions).tolist() == [ids[i] for i in positions]
    assert pickle.loads(pickle.dumps(column)).tolist() == ids
    assert (column + [ObjectId(b"\x03" * 12)]).tolist() == [*ids, ObjectId(b"\x03" * 12)]


def test_ids_are_put_in_mongodbs_order() -> None:
    ids = _ids(ROWS)
    shuffled = Column(ids)
    order = id_order(shuffled, collated=lambda: False)
    assert order is not None and [ids[i] for i in order] == sorted(ids, key=lambda oid: oid.binary)
    in_order = Column(sorted(ids, key=lambda oid: oid.binary))
    assert id_order(in_order, collated=lambda: False) is None
    high, low = ObjectId(b"\x02" * 12), ObjectId(b"\x01" * 12)  # equal ids keep their order, as sorted() does
    assert [int(i) for i in id_order(Column([high, high, low]), collated=lambda: False)] == [2, 0, 1]  # type: ignore[union-attr]
    assert id_order(Column([low, high, high]), collated=lambda: False) is None
