"""Prediction ids: what /predict and /v2 answer carry, and what POST /feedback names.

An id is a version-7 UUID (RFC 9562) as 32 hex digits: the millisecond it was minted, then 74 random
bits, so ids from several workers or restarts never collide. The time lets /feedback tell an id whose
record may still be on its way to the log (minted in the last seconds: looked for again) from one no
/predict gave recently (looked for once): a flood of made-up ids no longer holds the feedback threads
for the whole grace period each, which delayed every real outcome behind them.
"""

from __future__ import annotations

import os
import time
from typing import List, Optional

_HEX = frozenset("0123456789abcdef")
RANDOM_AT_ONCE = 256
_random: List[int] = []  # 80 random bits each, for the next ids
if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_random.clear)

# Of a 128-bit id: the 4 version bits and the 2 variant bits cleared, then set (version 7, variant 10).
_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_SET = (0x7 << 76) | (0x2 << 62)


def new_id() -> str:
    """A fresh id: 48 bits of Unix milliseconds, the version, 12 + 62 random bits, the variant.

    The random bits of RANDOM_AT_ONCE ids are read at once: a getrandom() system call per request
    cost more than the rest of making its id. Each is taken once (list.pop is atomic), and a forked
    worker starts with none of its parent's, so workers never share them."""
    try:
        random = _random.pop()
    except IndexError:
        raw = os.urandom(10 * RANDOM_AT_ONCE)
        _random.extend(int.from_bytes(raw[start : start + 10], "big") for start in range(0, len(raw), 10))
        random = _random.pop()
    bits = (time.time_ns() // 1_000_000 % (1 << 48)) << 80 | random
    return "%032x" % (bits & _CLEAR | _SET)


def minted_ms(prediction_id: str) -> Optional[int]:
    """When an id of new_id's was minted (Unix ms), or None for any other string."""
    if len(prediction_id) != 32 or not _HEX.issuperset(prediction_id):
        return None
    if prediction_id[12] != "7" or prediction_id[16] not in "89ab":
        return None
    return int(prediction_id[:12], 16)


__all__ = ["minted_ms", "new_id"]
