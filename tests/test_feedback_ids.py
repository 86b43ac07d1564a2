"""Prediction ids carry the time they were minted, so that POST /feedback looks again only for an id
whose record may still be on its way to the inference log: a flood of made-up ids held the log's two
feedback threads 2.5 s each and delayed every real outcome behind them (64 of them: 80 s)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from mlpack.build import BuildResult
from mlpack.runtime.serving.ids import minted_ms, new_id
from tests.helpers.documents import subscribers
from tests.helpers.http_client import logged_server

RECORD = {k: v for k, v in subscribers(1)[0].items() if k not in ("_id", "churned")}


def test_an_id_is_a_version_7_uuid_that_says_when_it_was_minted() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.hex == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        minted = minted_ms(text)
        assert minted is not None and before <= minted <= after
    # Anything else is no id of ours: a version-4 UUID (an older server's), zeros, upper case, other lengths.
    for other in (uuid.uuid4().hex, "0" * 32, ids[0].upper(), ids[0][:-1], ids[0] + "0", "x" * 32, ""):
        assert minted_ms(other) is None, other


def test_a_flood_of_unknown_ids_does_not_hold_up_real_feedback(built_model: BuildResult) -> None:
    with logged_server(built_model.artifacts["wheel"]) as (process, _log):
        an_hour_ago = uuid.UUID(int=(int(new_id(), 16) - ((3_600_000) << 80))).hex
        unknown = [uuid.uuid4().hex for _ in range(40)] + ["0" * 32] * 12 + [an_hour_ago] * 12

        def send(prediction_id: str) -> int:
            return process.request("POST", "/feedback", {"id": prediction_id, "label": "stayed"}).status

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            flood = pool.map(send, unknown)
            answered = process.request("POST", "/predict", RECORD).json()
            real = process.request("POST", "/feedback", {"id": answered["id"], "label": "churned"})
            took = time.monotonic() - started
            statuses = list(flood)
        assert statuses == [404] * len(unknown)
        assert real.status == 202
        # Before: each unknown id held a feedback thread 2.5 s; the real outcome came after 19 s here.
        assert took < 10, took
        # An id minted a moment ago is still looked for until its record could have been written.
        fresh = new_id()
        started = time.monotonic()
        assert send(fresh) == 404
        assert time.monotonic() - started >= 2.0
