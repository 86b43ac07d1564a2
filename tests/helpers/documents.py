"""Synthetic subscriber documents shaped like a CRM collection: nested fields, categoricals, gaps.

The label depends on the features (so models learn something real) plus seeded noise.
"""

from __future__ import annotations

import random
from typing import Any

CONTRACTS = ["monthly", "yearly", "two_year"]
METHODS = ["card", "bank", "check"]

NUMERIC = ["tenure_months", "billing.monthly_charges", "support_calls"]
CATEGORICAL = ["contract", "billing.method"]


def subscribers(n: int = 240, seed: int = 7, *, missing_every: int = 23, absent: bool = True) -> list[dict[str, Any]]:
    """`absent`: some documents lack billing.method entirely (as MongoDB stores sparse data); else it is null."""
    rng = random.Random(seed)
    documents = []
    for index in range(n):
        tenure = rng.randint(0, 72)
        charges = round(rng.uniform(20, 120), 2)
        calls = rng.randint(0, 8)
        contract = rng.choice(CONTRACTS)
        method = rng.choice(METHODS)
        risk = (contract == "monthly") * 1.5 + calls * 0.35 - tenure * 0.04 + (charges > 90) * 0.8
        churned = risk + rng.gauss(0, 0.6) > 0.9
        document: dict[str, Any] = {
            "_id": index + 1,
            "customer": f"c{index:05d}",
            "tenure_months": tenure,
            "support_calls": calls,
            "contract": contract,
            "billing": {"monthly_charges": charges, "method": method, "currency": "EUR"},
            "churned": bool(churned),
            "label": "churned" if churned else "stayed",
            "lifetime_value": round(charges * tenure * 0.9 + calls * -15 + rng.gauss(0, 25), 2),
        }
        if missing_every and index % missing_every == 5:
            document["tenure_months"] = None  # imputed
        if missing_every and index % missing_every == 11:
            if absent:
                del document["billing"]["method"]  # missing category
            else:
                document["billing"]["method"] = None
        documents.append(document)
    return documents


def fuzzed_subscriber(values: Any) -> Any:
    """A hypothesis strategy: subscriber-shaped records whose fields take arbitrary `values`."""
    from hypothesis import strategies as st

    return st.fixed_dictionaries(
        {
            "tenure_months": values,
            "support_calls": values,
            "contract": values,
            "billing": st.fixed_dictionaries({"monthly_charges": values, "method": values}),
        }
    )


def distinct_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` different records a model can take, with what requests really carry: floats of any size,
    whole numbers, numeric text, nulls, absent fields, categories never seen in training."""
    rng = random.Random(seed)
    numbers = [
        lambda: rng.uniform(-1e3, 1e3),
        lambda: rng.randint(0, 100),
        lambda: rng.uniform(0, 1) * 10 ** rng.randint(-30, 30),
        lambda: f" {rng.randint(0, 99)} ",
        lambda: None,
    ]
    categories = [*CONTRACTS, *METHODS, "unseen", "", None, 3]
    records = []
    for index in range(n):
        record: dict[str, Any] = {
            "tenure_months": rng.choice(numbers)(),
            "support_calls": index,  # unique: no two records alike
            "contract": rng.choice(categories),
            "billing": {"monthly_charges": rng.choice(numbers)(), "method": rng.choice(categories)},
        }
        if index % 7 == 3:
            del record["billing"]["method"]  # absent: missing
        records.append(record)
    return records
