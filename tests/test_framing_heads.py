"""Heads read from memory: a head whose bytes were read before is read to exactly what the three
steps (take_head, parse_head, body_length) make of it, and a bad head is refused as before."""

from __future__ import annotations

import random
from typing import Any

from mlpack.runtime.serving import framing
from mlpack.runtime.serving.framing import FramingError, body_length, next_head, parse_head, take_head

GOOD = [
    b"POST /predict HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 236\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /readyz HTTP/1.0\r\n\r\n",
    b"POST /predict?strict=true HTTP/1.1\r\nHost: a\r\nContent-Length: 0012\r\nConnection: close\r\n\r\n",
    b"HEAD /metadata HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
    b"POST http://a/predict HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
]


def heads() -> list[bytes]:
    rnd = random.Random(11)
    mutated = []
    for _ in range(3000):
        head = bytearray(rnd.choice(GOOD))
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(head) - 4)
            head[at : at + 1] = rnd.choice([b"", b"\r", b"\n", b" ", b"\x00", b"\t", b":", b"a", b"\r\n", b"\x7f"])
        mutated.append(bytes(head))
    return (
        GOOD + mutated + [b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n"]
    )


def by_steps(data: bytes) -> Any:
    buffer = bytearray(data)
    try:
        lines, _ = take_head(buffer, 0, 64 * 1024)
        if lines is None:
            return ("incomplete", bytes(buffer))
        method, target, version, headers = parse_head(lines)
        return ((method, target, version, headers, body_length(headers)), bytes(buffer))
    except FramingError as error:
        return (error.status, error.message)


def at_once(data: bytes) -> Any:
    buffer = bytearray(data + b"rest")
    try:
        head, _ = next_head(buffer, 0, 64 * 1024)
        if head is None:
            return ("incomplete", bytes(buffer[:-4]))
        return (head, bytes(buffer[:-4]))
    except FramingError as error:
        return (error.status, error.message)


def test_a_head_read_again_is_read_as_the_first_time_and_bad_ones_are_refused_the_same() -> None:
    framing._SEEN_HEADS.clear()
    for data in heads():
        wanted = by_steps(data)
        assert at_once(data) == wanted, data  # read, and remembered if good
        assert at_once(data) == wanted, data  # from memory
    remembered = list(framing._SEEN_HEADS.items())
    assert 0 < len(remembered) <= framing._SEEN_LINES  # bounded whatever clients send
    assert all(by_steps(key) == (head, b"") for key, head in remembered)  # good heads only, as read


def test_a_head_that_comes_in_pieces_is_read_whole() -> None:
    data = GOOD[0]
    buffer, scanned = bytearray(data[:30]), 0
    head, scanned = next_head(buffer, scanned, 64 * 1024)
    assert head is None and scanned > 0
    buffer += data[30:] + b"{}"
    head, scanned = next_head(buffer, scanned, 64 * 1024)
    assert head == by_steps(data)[0] and scanned == 0 and buffer == b"{}"
