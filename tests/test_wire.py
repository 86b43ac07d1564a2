"""What every answer is made of: JSON out exactly as json.dumps writes it, JSON in exactly as
json.loads reads it (its errors as 400s), and prediction ids that never repeat, across forks too."""

from __future__ import annotations

import json
import os
import random
import uuid
from typing import Any

from mlpack.runtime.serving import ids, wire
from mlpack.runtime.serving.ids import new_id
from mlpack.runtime.serving.wire import ClientError, dump_json_text, parse_json


def documents() -> list[Any]:
    rnd = random.Random(7)
    fixed: list[Any] = [
        ["stayed"],
        [[0.04000061750411987, 0.9599993824958801]],
        'quote " backslash \\ newline \n é \u2028 \U0001f600',
        1.5,
        10**30,
        True,
        None,
        {"a": [1, 2.0, "é", {"b": None}], "c": False, "d": (1, 2)},
        [1e-320, -0.0, 5e-324, 1.7976931348623157e308],
        {1: 2, 2.5: "x", None: 1, False: 0},
        [],
        {},
        "",
        [[[]]],
    ]
    drawn = [
        [rnd.random() * 10 ** rnd.randint(-30, 30), rnd.randint(-(10**20), 10**20), chr(rnd.randint(32, 0x10FFFF))]
        for _ in range(2000)
    ]
    return fixed + drawn


def test_answers_are_what_json_dumps_writes() -> None:
    for document in documents():
        assert dump_json_text(document) == json.dumps(document, allow_nan=False)


def test_floats_json_cannot_carry_are_null() -> None:
    assert (
        dump_json_text([[float("nan"), 0.5], {"x": float("inf"), "y": -float("inf")}])
        == '[[null, 0.5], {"x": null, "y": null}]'
    )


def bodies() -> list[bytes]:
    """Bodies as clients send them, and broken ones: each read as json.loads reads it."""
    rnd = random.Random(8)
    good = [json.dumps(d, ensure_ascii=a).encode() for d in documents()[:200] for a in (True, False)]
    broken = [b"{", b"[", b"{}x", b"[1,]", b'{"a": 1} ', b'{"a": 1}  \n', b"[1] [2]", b'{"a": NaN}', b"[-Infinity]"]
    broken += [b'{"a": "\xff"}', b'["\xed\xa0\x80"]', b"{\x00}", b"[\x00\x00\x00", b"\xef\xbb\xbf[1]", b"[1e999]"]
    broken += [
        "[1, 2]".encode("utf-16"),
        "[1, 2]".encode("utf-32-le"),
        b" [1]",
        b"",
        b"7",
        b'"s"',
        b"[" + b"9" * 5000 + b"]",
    ]
    cut = [body[: rnd.randint(0, len(body))] for body in good[:300]]
    flipped = [bytes(b ^ (1 << rnd.randint(0, 7)) if rnd.random() < 0.05 else b for b in body) for body in good[:300]]
    return good + broken + cut + flipped


def read(body: bytes) -> Any:
    try:
        return ("value", parse_json(body, 10**6))
    except ClientError as error:
        return ("error", error.status, error.message)


def expected(body: bytes) -> Any:
    try:
        return ("value", json.loads(body))
    except ValueError as exc:
        if type(exc) is ValueError:  # an int past Python's digits limit: kept for the runtime to name the field
            return ("value", json.loads(body, parse_int=wire._parse_int))
        return ("error", 400, f"the body is not valid JSON: {exc}")


def test_bodies_are_read_as_json_loads_reads_them() -> None:
    for body in bodies():
        got, want = read(body), expected(body)
        assert repr(got) == repr(want), body  # repr: NaN is NaN, -0.0 is not 0.0


def test_a_body_at_the_element_limit_is_refused_whatever_its_length() -> None:
    # Bodies whose every byte is an element counted (brackets, commas, colons; a string's two quotes
    # one) are refused exactly at the limit, so reading fewer than max_values bytes skips nothing.
    for body in (b"[[[[[", b"[,,,,", b'{:"",', b"[::::", b"{{{{{{"):
        counted = body.count(b"[") + body.count(b"{") + body.count(b'"') // 2 + body.count(b",") + body.count(b":")
        for limit in range(counted - 1, counted + 3):
            got = read_with(body, limit)
            assert (got[:2] == ("error", 413)) == (counted >= limit), (body, limit, got)


def read_with(body: bytes, max_values: int) -> Any:
    try:
        return ("value", parse_json(body, max_values))
    except ClientError as error:
        return ("error", error.status, error.message)


def test_prediction_ids_never_repeat_even_across_a_fork() -> None:
    made = [new_id() for _ in range(3 * ids.RANDOM_AT_ONCE)]  # their random bits read several times
    assert len(set(made)) == len(made) and all(uuid.UUID(i).version == 7 for i in made)
    new_id()  # the parent holds random bits read ahead: a worker forked now must not use them
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, new_id()[13:].encode())  # after the time: what must differ
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 64).decode() != new_id()[13:]
    os.close(read)
