"""Loading training data: mlpack's loader vs MongoDB's own Arrow library, pymongo and pandas.

Same collection (1.1 KB nested documents: 12 of ~20 fields projected, sub-documents, a date, gaps
and nulls), same projection, `_id` order: the peers ask the server to sort, mlpack reads in natural
order and sorts by `_id` itself (mlpack.source.order), which its client CPU includes. Each peer
runs in a fresh process, the peers interleaved round by round; the figures are medians over the
rounds, ratios taken in this run:

- `raw batches`: `find_raw_batches`, bytes only (the wire and the server: nobody reads faster)
- `find()`: pymongo's documents, decoded by its C extension, nothing read out of them
- `pymongoarrow`: `find_arrow_all` with a schema (structs for the sub-documents)
- `per-document`: the loader before issue 23 (`find()`, the runtime's `lookup` per document and
  field, Python lists), and `+ validation` (the per-value `to_number`/`category_text`/dates)
- `mlpack`: `load_columns` (raw batches fetched in a thread, each read from its bytes into typed
  columns by `source.rawbson`), and `+ validation` (`validate`: the training columns)
- `mlpack via pymongo decode`: the same with `source.rawbson` switched off, as before it: each batch
  decoded into dicts by pymongo's C extension and read out of them (the path every batch rawbson
  does not read still takes); the loader this one is held to for wall time and memory
- `mlpack (A/A)`: `mlpack` again, under another name: the spread this machine gives one peer
- `json_normalize`: `find()` + `pd.json_normalize`, what notebooks do

Measured per run: the client's CPU (user + system of its process: against a real mongod the
client's CPU decides; the test server is slower than any client), wall time, and the peak RSS
growth over the process's RSS before loading (the peak reset just before it, where Linux allows).
Uses MONGODB_URI, or starts the embedded server.

    python benchmarks/load.py [--documents 100000] [--rounds 5]   # needs pymongoarrow (the [bench] extra)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATABASE = "mlpack_bench"
NUMERIC = ["age", "visits", "tenure", "profile.income", "profile.score", "account.balance", "account.credit"]
CATEGORICAL = ["plan", "address.region", "device"]
DATES = ["signup"]
TARGET = "churned"
PATHS = [*NUMERIC, *CATEGORICAL, *DATES, TARGET]
START = dt.datetime(2020, 1, 1)
REGIONS = ["north", "south", "east", "west", "central"]


def document(index: int, rng: random.Random) -> dict[str, Any]:
    """A customer as a CRM collection holds one: ~1.1 KB, nested, with gaps and nulls."""
    doc: dict[str, Any] = {
        "_id": index,
        "age": rng.randint(18, 90),
        "visits": rng.randint(0, 200),
        "tenure": rng.randint(0, 120),
        "profile": {"income": round(rng.uniform(1e4, 2e5), 2), "score": rng.random(), "bio": "y" * 120},
        "account": {"balance": round(rng.gauss(500, 300), 2), "credit": rng.randint(300, 850), "iban": "DE" + "0" * 20},
        "plan": rng.choice(["basic", "plus", "pro", "team"]),
        "address": {"region": rng.choice(REGIONS), "street": "Main street 1", "city": "Springfield"},
        "device": rng.choice(["ios", "android", "web"]),
        "signup": START + dt.timedelta(minutes=rng.randint(0, 2_000_000)),
        "churned": rng.random() < 0.3,
        "notes": "x" * 400,
        "history": [{"month": m, "paid": True} for m in range(12)],
    }
    if index % 37 == 5:
        doc["age"] = None
    if index % 41 == 7:
        del doc["address"]["region"]
    return doc


def seeded(uri: str, name: str, count: int) -> None:
    """The collection `name` with `count` documents (kept between runs: seeding the test server is slow)."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    collection = client[DATABASE][name]
    if collection.estimated_document_count() != count:
        collection.drop()
        for start in range(0, count, 10_000):
            rng = random.Random(3 + start)
            collection.insert_many([document(i, rng) for i in range(start, min(count, start + 10_000))])
    client.close()


def features() -> Any:
    from mlpack.config import FeaturesSection

    return FeaturesSection(target=TARGET, numeric=NUMERIC, categorical=CATEGORICAL, datetime=DATES)


def run_peer(peer: str, uri: str, name: str) -> dict[str, float]:
    """One peer in this (fresh) process: client CPU, wall and peak RSS growth of the load alone."""
    import bson
    from pymongo import MongoClient

    collection: Any = MongoClient(uri)[DATABASE][name]
    projection = dict.fromkeys(PATHS, 1)
    find = {"projection": projection, "sort": [("_id", 1)], "batch_size": 2_000}

    def raw_batches() -> int:
        documents = 0
        for batch in collection.find_raw_batches({}, **find):  # count the documents: each starts with its length
            at = 0
            while at < len(batch):
                at += int.from_bytes(batch[at : at + 4], "little")
                documents += 1
        return documents

    def pymongo_find() -> int:
        return sum(1 for _ in collection.find({}, **find))

    def with_pymongoarrow() -> int:
        import pyarrow as pa
        from pymongoarrow.api import Schema, find_arrow_all

        f64 = pa.float64()
        schema = Schema(
            {
                "_id": pa.int64(),
                **{path: f64 for path in NUMERIC if "." not in path},
                "profile": pa.struct([("income", f64), ("score", f64)]),
                "account": pa.struct([("balance", f64), ("credit", f64)]),
                "plan": pa.string(),
                "address": pa.struct([("region", pa.string())]),
                "device": pa.string(),
                "signup": pa.timestamp("ms"),
                "churned": pa.bool_(),
            }
        )
        return int(find_arrow_all(collection, {}, schema=schema, projection=projection, sort=[("_id", 1)]).num_rows)

    def per_document(validated: bool = False) -> int:
        from mlpack.runtime import ABSENT, lookup
        from mlpack.source import RawColumns

        raw = RawColumns(values={p: [] for p in PATHS}, present=dict.fromkeys(PATHS, 0))  # type: ignore[misc]
        split = [(p, tuple(p.split("."))) for p in PATHS]
        for doc in collection.find({}, **find):
            raw.ids.append(doc.get("_id"))
            for path, parts in split:
                value = lookup(doc, path, parts)
                raw.present[path] += value is not ABSENT
                raw.values[path].append(None if value is ABSENT else value)
        if validated:  # plain lists: validate reads value by value, as it did
            from mlpack.validate import validate

            validate(raw, features(), "classification")
        return raw.rows

    def ours(validated: bool = False) -> int:
        from mlpack.source import load_columns

        raw = load_columns(collection, PATHS)
        if validated:
            from mlpack.validate import validate

            validate(raw, features(), "classification")
        return raw.rows

    def pymongo_decode(validated: bool = False) -> int:
        import mlpack.source.mongo

        mlpack.source.mongo.fits = lambda options: False  # type: ignore[assignment]  # no batch read by rawbson
        return ours(validated)

    def json_normalize() -> int:
        import pandas as pd

        return len(pd.json_normalize(list(collection.find({}, **find)))[PATHS])

    peers = {
        "raw batches": raw_batches,
        "find()": pymongo_find,
        "pymongoarrow": with_pymongoarrow,
        "per-document": per_document,
        "per-document + validation": lambda: per_document(True),
        "mlpack": ours,
        "mlpack + validation": lambda: ours(True),
        "mlpack (A/A)": ours,
        "mlpack via pymongo decode": pymongo_decode,
        "mlpack via pymongo decode + validation": lambda: pymongo_decode(True),
        "find + json_normalize": json_normalize,
    }
    # imports off the clock: each peer pays for its own libraries' import once, outside the figures
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pymongoarrow.api  # noqa: F401

    import mlpack.validate  # noqa: F401

    collection.find_one()
    bson.decode_all(bson.encode({}))
    with open("/proc/self/statm") as statm:
        before = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    reset = _reset_peak()  # else the lifetime peak, which the imports may have set before the load
    cpu, wall = time.process_time(), time.perf_counter()
    rows = peers[peer]()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = _peak() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"cpu": cpu, "wall": wall, "rss": max(0, peak - before) / 2**20, "rows": rows}


def _reset_peak() -> bool:
    """The process's peak RSS set back to its RSS now (Linux 4.0+: "5" into clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _peak() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


PEERS = [
    "raw batches",
    "find()",
    "pymongoarrow",
    "per-document",
    "per-document + validation",
    "mlpack",
    "mlpack + validation",
    "mlpack (A/A)",
    "mlpack via pymongo decode",
    "mlpack via pymongo decode + validation",
    "find + json_normalize",
]


def run(uri: str, documents: int, rounds: int, peers: list[str]) -> int:
    name = f"load_{documents}"
    seeded(uri, name, documents)
    load = [os.getloadavg()[0]]
    samples: dict[str, list[dict[str, float]]] = {peer: [] for peer in peers}
    for round_ in range(rounds):
        order = peers[round_ % len(peers) :] + peers[: round_ % len(peers)]  # interleaved, rotating
        for peer in order:
            out = subprocess.run(
                [sys.executable, __file__, "--child", peer, "--uri", uri, "--collection", name],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            assert result["rows"] == documents, (peer, result)
            samples[peer].append(result)
        load.append(os.getloadavg()[0])
    median = {p: {k: statistics.median(s[k] for s in samples[p]) for k in ("cpu", "wall", "rss")} for p in peers}
    print(f"{documents} documents, {len(PATHS)} fields projected, medians of {rounds} fresh processes, interleaved")
    print(f"load (1-minute average, at the start and after each round): {', '.join(f'{x:.1f}' for x in load)}")
    print(f"  {'':37s} {'client CPU':>10s} {'µs/doc':>7s} {'wall':>8s} {'peak RSS +':>10s}")
    for peer in peers:
        m = median[peer]
        line = f"  {peer:37s} {m['cpu']:9.2f}s {m['cpu'] / documents * 1e6:7.1f} {m['wall']:7.2f}s {m['rss']:8.0f}MiB"
        print(line)
    arrow = median.get("pymongoarrow")
    ok = True
    if arrow and "mlpack" in median and "mlpack + validation" in median:
        ours, validated = median["mlpack"], median["mlpack + validation"]
        goals: list[tuple[str, float, float | None]] = [
            ("client CPU, mlpack / pymongoarrow", ours["cpu"] / arrow["cpu"], 1.0),
            ("client CPU, mlpack + validation / pymongoarrow", validated["cpu"] / arrow["cpu"], 1.2),
        ]
        if "mlpack (A/A)" in median:
            control = median["mlpack (A/A)"]
            goals += [("client CPU, mlpack (A/A) / mlpack: the control", control["cpu"] / ours["cpu"], None)]
        if "mlpack via pymongo decode" in median:
            before = median["mlpack via pymongo decode"]
            goals += [
                ("wall, mlpack / mlpack with pymongo's decode", ours["wall"] / before["wall"], 1.0),
                ("peak RSS, mlpack / mlpack with pymongo's decode", ours["rss"] / max(before["rss"], 1e-9), 1.0),
                ("client CPU, mlpack / mlpack with pymongo's decode", ours["cpu"] / before["cpu"], None),
            ]
        if "per-document" in median:
            before, before_validated = median["per-document"], median["per-document + validation"]
            rss, cpu = validated["rss"] / before_validated["rss"], validated["cpu"] / before_validated["cpu"]
            goals += [
                ("wall, mlpack / per-document (before issue 23)", ours["wall"] / before["wall"], 1.0),
                ("peak RSS, mlpack + validation / per-document + validation", rss, 1.0),
                ("client CPU, mlpack + validation / per-document + validation", cpu, None),
            ]
        print("ratios (this run):")
        for label, ratio, goal in goals:
            met = "" if goal is None else ("  met" if ratio <= goal else f"  MISSED (goal <= {goal})")
            ok = ok and (goal is None or ratio <= goal)
            print(f"  {label:60s} {ratio:5.2f}x{met}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of: " + ", ".join(PEERS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--collection", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_peer(args.child, args.uri, args.collection)))
        return 0
    peers = [p.strip() for p in args.peers.split(",")]
    uri = os.environ.get("MONGODB_URI")
    if uri:
        return run(uri, args.documents, args.rounds, peers)
    from mlpack.source.embedded import embedded_server

    with embedded_server() as started:
        return run(started, args.documents, args.rounds, peers)


if __name__ == "__main__":
    raise SystemExit(main())
