"""One record's feeds (`Model._record_feeds`, the server's usual request), whatever shape its nested
fields take: a sub-document, a dotted key (which wins), both, a null, a plain value or a list where the
sub-document belongs, a mapping that is not a dict, an absent or null inner field. A plain dict's
field is read without `values.lookup`'s checks, so each reading is compared with `lookup`'s (the same
record with its sub-documents as mappings that are not dicts) and with the reading of the record in a
list of one (`_record_columns`), and beside other records. Same arrays, or the same error."""

from __future__ import annotations

import types
from typing import Any

import pytest

from mlpack.build import ExportedModel
from mlpack.runtime import Model
from tests.helpers.documents import subscribers
from tests.helpers.training import config_for, export, runtime_model


@pytest.fixture(scope="module")
def model() -> Model:
    exported: ExportedModel = export(
        config_for("sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 5}),
        subscribers(120, absent=False),
    )
    return runtime_model(exported)


BILLING_SHAPES: list[Any] = [
    {"monthly_charges": 70.5, "method": "card"},
    {"monthly_charges": None, "method": None},
    {"method": "bank"},  # monthly_charges absent
    {},
    None,
    5,
    "card",
    [70.5, "card"],
    types.MappingProxyType({"monthly_charges": 12.0, "method": "check"}),
    {"monthly_charges": "71.5", "method": 3},  # a number as text; a category that is a number
    {"monthly_charges": [1, 2], "method": "card"},  # refused: a list for a number
]


def shapes() -> list[dict[str, Any]]:
    records = []
    for billing in BILLING_SHAPES:
        base = {"tenure_months": 12, "support_calls": 1, "contract": "monthly"}
        records.append({**base, "billing": billing})
        records.append({**base, "billing": billing, "billing.method": "check"})  # the dotted key wins
        records.append({**base, "billing.monthly_charges": 33.0, "billing.method": "bank"})
        records.append(base)  # no billing at all
    return records


def reading(model: Model, record: dict[str, Any], strict: bool, one: bool) -> Any:
    try:
        feeds = model._record_feeds(record, strict) if one else model.feeds([record], strict)[0]
    except ValueError as exc:
        return ("error", str(exc).replace("record 0: ", ""))
    return {  # numbers by their bits (NaN included), categories by their text
        name: (array.dtype.str, array.shape, array.tobytes() if array.dtype.kind == "f" else array.tolist())
        for name, array in feeds.items()
    }


def proxied(record: dict[str, Any]) -> dict[str, Any]:
    """The record with each sub-document a read-only mapping: read through `lookup` alone."""
    return {key: types.MappingProxyType(value) if type(value) is dict else value for key, value in record.items()}


@pytest.mark.parametrize("strict", [False, True])
def test_one_record_reads_as_lookup_and_as_a_list_of_one(model: Model, strict: bool) -> None:
    for record in shapes():
        alone = reading(model, record, strict, True)
        assert alone == reading(model, proxied(record), strict, True), record
        assert alone == reading(model, record, strict, False), record


ODD = {"tenure_months": 1, "support_calls": 0, "contract": "yearly", "billing": 5}


@pytest.mark.parametrize("strict", [False, True])
def test_a_record_reads_the_same_beside_any_other(model: Model, strict: bool) -> None:
    """Both spellings of a field (a sub-document and a dotted key): the dotted key's value, alone, in
    a list of one, and in a batch beside a record whose `billing` is a number (which once sent the
    whole batch's column to the careful reading: a batch read the sub-document's value and one record
    the dotted key's, so the same request got other probabilities batched)."""
    for record in shapes():
        alone = reading(model, record, strict, True)
        for batch in ([record, ODD], [ODD, record], [record, record]):
            try:
                feeds = model.feeds(batch, strict)[0]
            except ValueError as exc:
                assert isinstance(alone, tuple) or "record" in str(exc), (record, exc)
                continue
            at = batch.index(record)
            row = {name: array[at : at + 1] for name, array in feeds.items()}
            assert alone == {
                name: (a.dtype.str, a.shape, a.tobytes() if a.dtype.kind == "f" else a.tolist())
                for name, a in row.items()
            }, (record, batch)


def test_one_record_after_another_in_the_same_arrays_reads_each_its_own(model: Model) -> None:
    """`run` writes one record into [1, 1] arrays kept from the one before: each record's answer and
    the feeds its observer sees are its own (a gap after a value, a value after a gap, a category
    after another), also when the observer itself runs the model on another record meanwhile (as a
    second thread would): the arrays it holds are not handed out again until it returns."""
    records = [r for r in shapes() if not isinstance(reading(model, r, False, True), tuple)]
    records += [{"tenure_months": None, "support_calls": 7, "contract": None, "billing": {"method": "card"}}]
    seen: list[Any] = []

    def observe(feeds: Any, labels: Any) -> None:
        own = bits(feeds)
        model.run(records[(len(seen) + 5) % len(records)])  # another record, in the middle of this one
        seen.append((own, bits(feeds)))

    for record in [*records, *reversed(records)]:
        labels, probabilities, single = model.run(record, observe)
        assert single and (labels, probabilities) == model.run([record])[:2], record
        own, after = seen[-1]
        assert own == after == reading(model, record, False, True), record


def bits(feeds: Any) -> Any:
    return {
        name: (a.dtype.str, a.shape, a.tobytes() if a.dtype.kind == "f" else a.tolist()) for name, a in feeds.items()
    }


# A parent that is a plain value has no fields (as MongoDB's projection reads it, which loads the
# training data): its fields are absent, so missing, and `strict` refuses them naming the parent.
PARENTS = [(5, "billing is 5"), (None, "billing is null"), ("card", "billing is 'card'"), ([1, 2], "billing is [1, 2]")]


@pytest.mark.parametrize(("billing", "said"), PARENTS, ids=[said for _, said in PARENTS])
def test_strict_names_a_parent_that_is_a_plain_value(model: Model, billing: Any, said: str) -> None:
    record = {"tenure_months": 12, "support_calls": 1, "contract": "monthly", "billing": billing}
    reason = f"field 'billing.monthly_charges': absent ({said}, not a document; strict: every field must be given)"
    with pytest.raises(ValueError) as alone:
        model.predict(record, strict=True)
    assert str(alone.value) == reason
    with pytest.raises(ValueError) as batched:
        model.predict([{**record, "billing": {"monthly_charges": 1.0, "method": "card"}}, record], strict=True)
    assert str(batched.value) == f"record 1: {reason}"
    # Not strict: the reading is unchanged, the record's answer is that of one without billing.
    without = {key: value for key, value in record.items() if key != "billing"}
    assert model.predict_proba(record) == model.predict_proba(without)


def test_strict_says_only_absent_of_a_field_a_document_lacks() -> None:
    from mlpack.runtime.values import absent_reason

    plain = "absent (strict: every field must be given)"
    assert absent_reason({"billing": {"method": "card"}}, ("billing", "monthly_charges")) == plain
    assert absent_reason({}, ("billing", "monthly_charges")) == plain
    assert absent_reason({"a": {"b": 5}}, ("a", "b", "c")).startswith("absent (a.b is 5, not a document")
    assert absent_reason({"a": 5}, ("a", "b", "c")).startswith("absent (a is 5, not a document")
