"""Dates → numbers, in the graph: year, month, day, day of week, hour and days since 1970.

The graph receives a date as int64 milliseconds since 1970 UTC (BSON's own representation;
`runtime.date_milliseconds` turns datetimes, ISO 8601 strings and Extended JSON into it). The
calendar arithmetic is Howard Hinnant's `civil_from_days`, in integer operations that ONNX has,
written once against `Ops` so the numpy reference and the graph are the same steps.
"""

from __future__ import annotations

from mlpack.features.ops import MISSING_DATE, Ops, Value

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
# The parts `[features].datetime` turns each date field into, in this order.
DATE_PARTS = ("year", "month", "day", "dayofweek", "hour", "days")


def date_parts(ops: Ops, ms: Value, parts: tuple[str, ...] = DATE_PARTS) -> dict[str, Value]:
    """Each requested part as float32, NaN where the date is missing."""
    missing = ops.binary("Equal", ms, ops.integer(MISSING_DATE))
    safe = ops.where(missing, ops.integer(0), ms)
    within_day = ops.binary("Mod", safe, ops.integer(MS_PER_DAY))  # >= 0: Mod takes the divisor's sign
    days = _exact_div(ops, ops.binary("Sub", safe, within_day), MS_PER_DAY)  # floor, also before 1970
    integers: dict[str, Value] = {"days": days}
    if "hour" in parts:
        integers["hour"] = _div(ops, within_day, MS_PER_HOUR)
    if "dayofweek" in parts:  # 1970-01-01 was a Thursday; Monday = 0 as in Python and pandas
        integers["dayofweek"] = ops.binary("Mod", ops.binary("Add", days, ops.integer(3)), ops.integer(7))
    if {"year", "month", "day"} & set(parts):
        integers.update(_civil_from_days(ops, days))
    nan = ops.number(float("nan"))
    return {part: ops.where(missing, nan, ops.cast(integers[part], "float32")) for part in parts}


def days_between(ops: Ops, start: Value, end: Value) -> Value:
    """(end - start) in days, with fractions; NaN where either date is missing."""
    missing_value = ops.integer(MISSING_DATE)
    missing = ops.binary("Or", ops.binary("Equal", start, missing_value), ops.binary("Equal", end, missing_value))
    # float64: milliseconds are exact in it (up to 2**53), and the difference is taken before rounding.
    difference = ops.binary("Sub", ops.cast(end, "float64"), ops.cast(start, "float64"))
    days = ops.cast(ops.binary("Div", difference, ops.cast(ops.integer(MS_PER_DAY), "float64")), "float32")
    return ops.where(missing, ops.number(float("nan")), days)


def _div(ops: Ops, value: Value, divisor: int) -> Value:
    """Integer division of a value that is never negative (truncation = floor there)."""
    return ops.binary("Div", value, ops.integer(divisor))


def _exact_div(ops: Ops, value: Value, divisor: int) -> Value:
    return ops.binary("Div", value, ops.integer(divisor))


def _civil_from_days(ops: Ops, days: Value) -> dict[str, Value]:
    """Year, month, day of the proleptic Gregorian calendar (http://howardhinnant.github.io/date_algorithms.html)."""

    def n(value: int) -> Value:
        return ops.integer(value)

    def add(a: Value, b: Value) -> Value:
        return ops.binary("Add", a, b)

    def sub(a: Value, b: Value) -> Value:
        return ops.binary("Sub", a, b)

    def mul(a: Value, b: Value) -> Value:
        return ops.binary("Mul", a, b)

    z = add(days, n(719_468))  # days since 0000-03-01
    day_of_era = ops.binary("Mod", z, n(146_097))  # [0, 146096]
    era = _exact_div(ops, sub(z, day_of_era), 146_097)
    year_of_era = _div(
        ops,
        sub(
            add(sub(day_of_era, _div(ops, day_of_era, 1_460)), _div(ops, day_of_era, 36_524)),
            _div(ops, day_of_era, 146_096),
        ),
        365,
    )  # [0, 399]
    day_of_year = sub(
        day_of_era, sub(add(mul(n(365), year_of_era), _div(ops, year_of_era, 4)), _div(ops, year_of_era, 100))
    )
    month_from_march = _div(ops, add(mul(n(5), day_of_year), n(2)), 153)  # [0, 11]
    day = add(sub(day_of_year, _div(ops, add(mul(n(153), month_from_march), n(2)), 5)), n(1))
    after_december = ops.cast(ops.binary("GreaterOrEqual", month_from_march, n(10)), "int64")
    month = sub(add(month_from_march, n(3)), mul(n(12), after_december))
    january_or_february = ops.cast(ops.binary("LessOrEqual", month, n(2)), "int64")
    year = add(add(year_of_era, mul(era, n(400))), january_or_february)
    return {"year": year, "month": month, "day": day}
