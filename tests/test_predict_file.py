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


# -- a file that shares no field with the model (a newcomer's wrong file, or the wrong model) ------
# The fields the model reads, in its order (numeric first).
FIELDS = ["tenure_months", "billing.monthly_charges", "support_calls", "contract", "billing.method"]


def test_a_csv_whose_header_has_none_of_the_models_fields_is_refused(
    built_model: Any, run: Any, tmp_path: Path
) -> None:
    """Every row would be predicted from imputed values alone: a confident answer about nothing."""
    table = tmp_path / "iris.csv"
    table.write_text("sepal_length,sepal_width,species\n5.1,3.5,setosa\n4.9,3.0,setosa\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    result = run("predict", built_model.artifacts["onnx"], "--input", table, "--output", output)
    assert_clean_error(result, 2, f"--input {table}: no column of the header is a field the model reads")
    assert "it reads " + ", ".join(FIELDS) in result.err  # what the model reads...
    assert "the header has sepal_length, sepal_width, species" in result.err  # ...and what the file has
    assert len(result.err.strip().splitlines()) == 1 and result.out == ""
    assert not output.exists() and not list(tmp_path.glob(".mlpack-predict-*"))


def test_a_csv_header_lacking_some_fields_warns_once_and_predicts(built_model: Any, run: Any, tmp_path: Path) -> None:
    table = tmp_path / "some.csv"
    table.write_text("tenure_months,contract,note\n12,monthly,a\n30,yearly,b\n3,monthly,c\n", encoding="utf-8")
    result = run("predict", built_model.artifacts["onnx"], "--input", table)
    assert result.code == 0, result.err
    assert result.err.splitlines() == [
        f"mlpack: warning: --input {table}: the CSV header has no column for 3 of the model's 5 fields, "
        "read as missing in every row: billing.monthly_charges, support_calls, billing.method"
    ]
    assert len(result.out.splitlines()) == 3
    quiet = run("predict", built_model.artifacts["onnx"], "--input", table, "-q")
    assert quiet.code == 0 and quiet.err == "" and quiet.out == result.out
    whole = tmp_path / "whole.csv"
    whole.write_text(",".join(FIELDS) + "\n12,70.5,1,monthly,card\n", encoding="utf-8")
    assert run("predict", built_model.artifacts["onnx"], "--input", whole).err == ""  # nothing lacking, nothing said


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_records_that_share_no_field_with_the_model_are_refused(
    built_model: Any, run: Any, tmp_path: Path, fmt: str
) -> None:
    # A parent that is a plain value has no fields ("billing": 5): billing.method is absent there too.
    records = [{"sepal_length": 5.1, "species": "setosa"}, {"_id": 3, "billing": 5}, {}]
    source = tmp_path / f"iris.{fmt}"
    text = "".join(json.dumps(r) + "\n" for r in records) if fmt == "jsonl" else json.dumps({"instances": records})
    source.write_text(text, encoding="utf-8")
    result = run("predict", built_model.artifacts["onnx"], "--input", source, "--on-error", "skip")
    assert_clean_error(result, 2, f"--input {source}: no record has a field the model reads")
    assert "it reads " + ", ".join(FIELDS) + "; the records have sepal_length, species, _id, billing" in result.err
    assert result.out == "" and len(result.err.strip().splitlines()) == 1


def test_one_record_without_the_fields_among_others_is_predicted_as_missing_values(
    built_model: Any, run: Any, tmp_path: Path
) -> None:
    """The server's reading: an absent field is a missing value. Only a whole file of them is refused."""
    source = tmp_path / "mixed.jsonl"
    records = [{}, {"note": "x"}, {"billing": {"method": "card"}}]
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = run("predict", built_model.artifacts["onnx"], "--input", source)
    assert result.code == 0 and result.err == "", result.err
    assert len(result.out.splitlines()) == 3


def test_the_first_batch_judges_a_large_file(built_model: Any) -> None:
    """Nothing is written before the refusal, so it is decided on the first batch read (2,000 records)."""
    import io

    from mlpack.artifacts.read import open_model
    from mlpack.runtime import InputFileError, predict_file

    model = open_model(built_model.artifacts["onnx"])
    lines = [json.dumps({"x": 1})] * 3 + [json.dumps(GOOD[0])]
    out = io.StringIO()
    with pytest.raises(InputFileError, match=r"none of the first 3 records has a field the model reads"):
        predict_file(model, io.StringIO("\n".join(lines)), "jsonl", out, batch=3)
    assert out.getvalue() == ""
    predict_file(model, io.StringIO("\n".join(lines[1:])), "jsonl", out, batch=3)  # a good one among the first 3
    assert len(out.getvalue().splitlines()) == 3


def test_the_wheels_own_cli_refuses_and_warns_the_same(built_model: Any, tmp_path: Path) -> None:
    import zipfile

    site = tmp_path / "site"
    with zipfile.ZipFile(built_model.artifacts["wheel"]) as archive:
        archive.extractall(site)
    foreign, partial = tmp_path / "iris.csv", tmp_path / "some.csv"
    foreign.write_text("sepal_length,species\n5.1,setosa\n", encoding="utf-8")
    partial.write_text("tenure_months,contract\n12,monthly\n", encoding="utf-8")
    answers = [
        subprocess.run(
            [sys.executable, "-m", "test_model", "predict", "--input", str(path)],
            capture_output=True,
            text=True,
            cwd=site,
            check=False,
        )
        for path in (foreign, partial)
    ]
    assert answers[0].returncode == 2 and answers[0].stdout == ""
    assert answers[0].stderr.startswith(f"error: --input {foreign}: no column of the header is a field the model reads")
    assert answers[1].returncode == 0 and len(answers[1].stdout.splitlines()) == 1
    assert answers[1].stderr.startswith(f"warning: --input {partial}: the CSV header has no column for 3")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_a_byte_order_mark_is_skipped(built_model: Any, run: Any, tmp_path: Path, fmt: str) -> None:
    """Excel's "CSV UTF-8" and PowerShell start a file with one: read as part of the first column's name,
    that column was predicted as missing in every row (and a JSON file did not parse)."""
    records = GOOD[:3]
    if fmt == "csv":
        text = ",".join(FIELDS) + "\n" + "".join(f"{r['tenure_months']},70.5,2,{r['contract']},card\n" for r in records)
    elif fmt == "jsonl":
        text = "".join(json.dumps(r) + "\n" for r in records)
    else:
        text = json.dumps(records)
    plain, marked = tmp_path / f"plain.{fmt}", tmp_path / f"marked.{fmt}"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    expected = run("predict", built_model.artifacts["onnx"], "--input", plain)
    assert expected.code == 0 and expected.err == "", expected.err
    got = run("predict", built_model.artifacts["onnx"], "--input", marked)
    assert (got.code, got.err, got.out) == (0, "", expected.out)
    command = [sys.executable, "-m", "mlpack", "predict", str(built_model.artifacts["onnx"]), "--input", "-"]
    piped = subprocess.run(
        [*command, "--format", fmt],
        input=marked.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert (piped.returncode, piped.stderr, piped.stdout.decode()) == (0, b"", expected.out)


def test_a_header_name_with_spaces_around_it_is_shown_quoted(built_model: Any, run: Any, tmp_path: Path) -> None:
    """' tenure_months' is not tenure_months: the message must let the user see the difference."""
    table = tmp_path / "spaced.csv"
    table.write_text(" tenure_months, contract\n12,monthly\n", encoding="utf-8")
    result = run("predict", built_model.artifacts["onnx"], "--input", table)
    assert_clean_error(result, 2, "the header has ' tenure_months', ' contract'")
