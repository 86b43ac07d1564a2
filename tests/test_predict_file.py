"""Batch prediction of files: `--on-error skip|fail`, streamed in bounded memory (issues 8 and 13)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import assert_clean_error
from tests.helpers.documents import subscribers

GOOD = subscribers(30, seed=5)
BAD_LINES = {
    3: ('{"tenure_months": "twelve"}', "line 3: field 'tenure_months': expected a number, got 'twelve'"),
    7: ("{not json", "line 7: not valid JSON"),
    12: ("[1, 2]", "line 12: expected an object of fields, got list"),
    20: ('{"contract": {"a": 1}}', "line 20: field 'contract': expected a category"),
}


def _mixed_file(tmp_path: Path) -> tuple[Path, int]:
    lines = []
    for number in range(1, 26):
        bad = BAD_LINES.get(number)
        lines.append(bad[0] if bad else json.dumps(GOOD[number]))
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return source, len(lines)


def test_skip_reports_each_bad_record_by_line_and_field_and_predicts_the_rest(
    built_model: Any, run: Any, tmp_path: Path
) -> None:
    source, count = _mixed_file(tmp_path)
    result = run("predict", built_model.artifacts["onnx"], "--input", source, "--on-error", "skip")
    assert result.code == 1  # some were skipped: a script can tell
    for _, message in BAD_LINES.values():
        assert message in result.err, result.err
    assert f"{len(BAD_LINES)} of {count} record(s) skipped" in result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert len(lines) == count  # output line k answers input record k
    for number, line in enumerate(lines, 1):
        if number in BAD_LINES:
            assert line["line"] == number and "error" in line and "prediction" not in line
        else:
            assert line["prediction"] in ("churned", "stayed")
    # The good records get the answers they get on their own.
    alone = run("predict", built_model.artifacts["onnx"], "--input", _only_good(tmp_path, source))
    assert alone.code == 0
    assert [json.loads(x)["prediction"] for x in alone.out.splitlines()] == [
        line["prediction"] for line in lines if "prediction" in line
    ]


def _only_good(tmp_path: Path, source: Path) -> Path:
    kept = [line for number, line in enumerate(source.read_text().splitlines(), 1) if number not in BAD_LINES]
    path = tmp_path / "good.jsonl"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def test_fail_stops_at_the_first_bad_record_and_writes_no_output_file(
    built_model: Any, run: Any, tmp_path: Path
) -> None:
    source, _ = _mixed_file(tmp_path)
    output = tmp_path / "predictions.jsonl"
    result = run("predict", built_model.artifacts["onnx"], "--input", source, "--output", output)
    assert_clean_error(result, 1, "line 3: field 'tenure_months': expected a number, got 'twelve'")
    assert "line 7" not in result.err
    assert not output.exists() and not list(tmp_path.glob(".mlpack-predict-*"))


def test_skip_with_nothing_wrong_exits_0_and_csv_works_the_same(built_model: Any, run: Any, tmp_path: Path) -> None:
    table = tmp_path / "records.csv"
    table.write_text(
        "tenure_months,support_calls,contract,billing.monthly_charges,billing.method\n"
        "12,1,monthly,70.5,card\n"
        "x,1,monthly,70.5,card\n"
        ",,yearly,,\n",
        encoding="utf-8",
    )
    result = run("predict", built_model.artifacts["onnx"], "--input", table, "--on-error", "skip")
    assert result.code == 1 and "line 3: field 'tenure_months': expected a number, got 'x'" in result.err
    assert [("prediction" in json.loads(x)) for x in result.out.splitlines()] == [True, False, True]
    fine = tmp_path / "fine.jsonl"
    fine.write_text(json.dumps(GOOD[0]) + "\n", encoding="utf-8")
    assert run("predict", built_model.artifacts["onnx"], "--input", fine, "--on-error", "skip").code == 0


def test_the_wheels_own_cli_has_the_same_options(built_model: Any, tmp_path: Path) -> None:
    """`python -m MODEL predict` runs the same code as `mlpack predict`, from the wheel's files."""
    import zipfile

    site = tmp_path / "site"
    with zipfile.ZipFile(built_model.artifacts["wheel"]) as archive:
        archive.extractall(site)
    source, count = _mixed_file(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "test_model", "predict", "--input", str(source), "--on-error", "skip"],
        capture_output=True,
        text=True,
        cwd=site,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "line 3: field 'tenure_months': expected a number" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stdout.splitlines()) == count


def _peak_rss_mib(*argv: str | Path) -> float:
    """Peak resident memory of a child process, from the kernel's own accounting."""
    script = (
        "import resource, subprocess, sys\n"
        "proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "assert proc.returncode == 0, proc.stderr.decode()[-2000:]\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, argv)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.strip()) / 1024


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_large_file_is_streamed_in_bounded_memory(built_model: Any, tmp_path: Path, fmt: str) -> None:
    """Memory must not grow with the file: a 40k-record file costs what a 10-record file costs (±30 MiB).

    Read whole, the 40k records alone take ~100 MiB of Python objects; streamed, batches of 2,000 do not.
    """
    record = GOOD[1]
    small, large = tmp_path / f"small.{fmt}", tmp_path / f"large.{fmt}"
    for path, count in ((small, 10), (large, 40_000)):
        with path.open("w", encoding="utf-8") as stream:
            if fmt == "csv":
                stream.write("tenure_months,support_calls,contract,billing.monthly_charges,billing.method,note\n")
                line = f"{record['tenure_months'] or ''},3,monthly,70.5,card,{'x' * 200}\n"
            else:
                line = json.dumps({**record, "note": "x" * 200}) + "\n"
            stream.write(line * count)
    command = [sys.executable, "-m", "mlpack", "predict", built_model.artifacts["onnx"], "--input"]
    baseline = _peak_rss_mib(*command, small)
    peak = _peak_rss_mib(*command, large)
    assert large.stat().st_size > 8 * 2**20
    print(f"{fmt}: peak RSS {baseline:.0f} MiB for 10 records, {peak:.0f} MiB for 40,000")
    assert peak - baseline < 30, (baseline, peak)


def test_each_answer_carries_its_records_id_so_it_can_be_joined_back(
    built_model: Any, run: Any, tmp_path: Path
) -> None:
    """`_id` as the record had it (a number, a string, an Extended JSON ObjectId), on good and bad lines."""
    records = [{**GOOD[0], "_id": 7}, {**GOOD[1], "_id": "a-7"}, {**GOOD[2], "_id": {"$oid": "0" * 24}}]
    records.append({key: value for key, value in GOOD[3].items() if key != "_id"})
    records.append({"_id": 9, "tenure_months": "twelve"})
    source = tmp_path / "keyed.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = run("predict", built_model.artifacts["onnx"], "--input", source, "--on-error", "skip")
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert [line.get("_id") for line in lines] == [7, "a-7", {"$oid": "0" * 24}, None, 9]
    assert "_id" not in lines[3] and "error" in lines[4] and all("prediction" in line for line in lines[:4])
    csv_file = tmp_path / "keyed.csv"
    csv_file.write_text("_id,tenure_months\nx1,12\n", encoding="utf-8")
    assert json.loads(run("predict", built_model.artifacts["onnx"], "--input", csv_file).out)["_id"] == "x1"
