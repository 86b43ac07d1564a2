"""The batcher on an event loop, with the runtime's real model: who shares a call, how large a call
grows, and what each request gets back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mlpack.build import BuildResult
from mlpack.runtime import Model
from mlpack.runtime.serving.batching import ALONE, OWN, QUEUED, Batcher, BatchStats
from tests.helpers.documents import distinct_records


@pytest.fixture(scope="module")
def model(built_model: BuildResult) -> Model:
    return Model(built_model.artifacts["onnx"].read_bytes(), built_model.metadata).load()


class Calls:
    """What the batcher ran: the records of each model call (BatchStats' own counting, read back)."""

    def __init__(self) -> None:
        self.stats = BatchStats()
        self.sizes: list[int] = []
        self.retries = 0
        count, retried = self.stats.count, self.stats.retried
        self.stats.count = lambda records, waits: (self.sizes.append(records), count(records, waits))  # type: ignore[method-assign]
        self.stats.retried = lambda: (setattr(self, "retries", self.retries + 1), retried())  # type: ignore[method-assign]


def submit(batcher: Batcher, data: Any, strict: bool = False) -> asyncio.Future[Any]:
    rows = data if isinstance(data, list) else [data]
    return batcher.submit(data, rows, len(rows), strict, lambda outcome: outcome)


def in_one_turn(batcher: Batcher, items: list[Any]) -> list[Any]:
    """Each item submitted by a callback of its own, all in the same turn of the loop, as requests
    whose bytes came in one pass over the sockets are; each one's outcome."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        for item in items:
            loop.call_soon(lambda item=item: futures.append(submit(batcher, item)))
        await asyncio.sleep(0.01)
        return [await future for future in futures]

    return asyncio.run(main())


def alone(model: Model, data: Any) -> str:
    try:
        return json.dumps(model.run(data)[:2])
    except ValueError as exc:
        return f"ValueError: {exc}"


def shown(outcome: Any) -> str:
    return f"ValueError: {outcome}" if isinstance(outcome, ValueError) else json.dumps(list(outcome))


def test_requests_of_one_turn_share_one_call_and_get_their_own_rows(model: Model) -> None:
    calls = Calls()
    batcher = Batcher(model, max_records=64, stats=calls.stats)
    records = distinct_records(40, seed=4)
    items: list[Any] = [*records[:30], records[30:33], records[33:40]]  # single records and lists
    outcomes = in_one_turn(batcher, items)
    assert calls.sizes == [40]
    assert [shown(o) for o in outcomes] == [alone(model, [i] if isinstance(i, dict) else i) for i in items]


def test_one_request_alone_runs_at_once_without_waiting_a_turn(model: Model) -> None:
    calls = Calls()
    batcher = Batcher(model, max_records=64, wait_us=50_000, stats=calls.stats)

    async def main() -> bool:
        future = submit(batcher, distinct_records(1)[0])
        return future.done()  # nothing else was ready to run: answered before submit returned

    assert asyncio.run(main()) and calls.sizes == [1]


def test_a_request_nothing_could_join_runs_alone_and_is_counted_as_a_call(model: Model) -> None:
    """ALONE only when no request waits, the last call held one and nothing else is ready on the
    loop; anything else that could share its call queues it, and a large one or off the loop is OWN."""
    batcher = Batcher(model, max_records=8, stats=BatchStats())

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        ways = [batcher.way(1), batcher.way(9)]  # alone on the loop; over the batch's records
        loop.call_soon(lambda: None)  # another callback is ready: a request it reads could join
        ways.append(batcher.way(1))
        await asyncio.sleep(0)
        loop.call_soon(lambda: None)
        future = submit(batcher, distinct_records(1)[0])  # queued: something else is ready
        ways.append(batcher.way(1))  # one is queued: this one joins it
        await future
        batcher.expected = 3  # the last call held three: the next ones are waited for
        ways.append(batcher.way(1))
        return ways

    assert asyncio.run(main()) == [ALONE, OWN, QUEUED, QUEUED, QUEUED]
    assert batcher.way(1) == OWN  # off the event loop (a large body, on an executor thread)
    alone, queued = BatchStats(), BatchStats()
    for records in (1, 0, 1):  # a call of one record, one refused (no call), another call
        alone.count_alone(records)
        queued.count(records, [0.0])
    assert alone.render() == queued.render()  # in /metrics, as a call of one that did not wait
    assert "mlpack_batch_records_sum 2" in alone.render() and "mlpack_batch_queue_seconds_count 3" in alone.render()


def test_no_call_holds_more_than_batch_max_records(model: Model) -> None:
    calls = Calls()
    batcher = Batcher(model, max_records=8, stats=calls.stats)
    records = distinct_records(30, seed=5)
    items = [records[i : i + 3] for i in range(0, 30, 3)]
    outcomes = in_one_turn(batcher, items)
    assert calls.sizes == [6, 6, 6, 6, 6] and sum(calls.sizes) == 30
    assert [shown(o) for o in outcomes] == [alone(model, item) for item in items]


def test_a_refused_record_fails_only_its_own_request(model: Model) -> None:
    calls = Calls()
    batcher = Batcher(model, max_records=64, stats=calls.stats)
    records = distinct_records(12, seed=6)
    items: list[Any] = [*records[:5], {"tenure_months": "abc"}, [records[5], {"support_calls": 1e39}], *records[6:]]
    outcomes = in_one_turn(batcher, items)
    assert [shown(o) for o in outcomes] == [alone(model, [i] if isinstance(i, dict) else i) for i in items]
    assert str(outcomes[5]) == "field 'tenure_months': expected a number, got 'abc'"
    assert isinstance(outcomes[6], ValueError) and "record 1: field 'support_calls'" in str(outcomes[6])
    assert calls.sizes == [11] and calls.retries == 1  # read again request by request; the good ones run once


def test_strict_and_lenient_requests_are_read_each_their_own_way(model: Model) -> None:
    batcher = Batcher(model, max_records=64)
    unseen = {**distinct_records(1)[0], "contract": "unseen"}

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        loop.call_soon(lambda: futures.append(submit(batcher, unseen, strict=True)))
        loop.call_soon(lambda: futures.append(submit(batcher, unseen, strict=False)))
        await asyncio.sleep(0.01)
        return [await future for future in futures]

    strict, lenient = asyncio.run(main())
    assert isinstance(strict, ValueError) and "not seen in training" in str(strict)
    assert shown(lenient) == alone(model, [unseen])


def test_a_wait_gathers_as_many_requests_as_the_last_call_had(model: Model) -> None:
    calls = Calls()
    batcher = Batcher(model, max_records=64, wait_us=200_000, stats=calls.stats)
    records = distinct_records(8, seed=7)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        for record in records[:4]:  # four at once: one call of 4, and the batcher expects 4 again
            loop.call_soon(lambda record=record: futures.append(submit(batcher, record)))
        await asyncio.sleep(0.01)
        started = loop.time()
        for record in records[4:]:  # then four a millisecond apart: held until the fourth came
            futures.append(submit(batcher, record))
            await asyncio.sleep(0.001)
        await asyncio.gather(*futures)
        assert loop.time() - started < 0.15  # not the whole wait: the fourth ended it

    asyncio.run(main())
    assert calls.sizes == [4, 4]
