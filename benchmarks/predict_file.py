"""Memory of `mlpack predict` on a big JSON Lines file: streamed (now) vs read whole (before).

Writes a JSON Lines file of realistic records (default 1 GiB), then runs, each in its own process:
  - streamed:   `python -m mlpack predict MODEL.onnx --input FILE --on-error skip -o /dev/null`
  - read whole: every record parsed into one list, then predicted in one call (the old behaviour)
and prints each one's peak RSS (the kernel's ru_maxrss) and time. The target: memory that does not
grow with the file.

    python benchmarks/predict_file.py [--mib 1024] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.predict import realistic  # noqa: E402
from tests.helpers.training import config_for, export  # noqa: E402

READ_WHOLE = """
import json, sys
from mlpack.artifacts.read import open_model
model = open_model(sys.argv[1])
with open(sys.argv[2], encoding="utf-8") as stream:
    records = [json.loads(line) for line in stream]
model.run(records)
"""


def peak_of(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one child process."""
    script = (
        "import resource, subprocess, sys, time\n"
        "started = time.perf_counter()\n"
        "proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(peak, time.perf_counter() - started, proc.returncode)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True).stdout
    kib, seconds, code = out.split()
    if code not in ("0", "1"):
        raise SystemExit(f"{argv} exited {code}")
    return int(kib) / 1024, float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024, help="size of the input file (MiB)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mlpack-bench-"))
    config = config_for(
        "sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 30, "random_state": 0}
    )
    model_path = folder / "model.onnx"
    model_path.write_bytes(export(config, realistic(400, seed=1)).onnx_bytes)
    source = folder / "records.jsonl"
    block = "".join(json.dumps(record) + "\n" for record in realistic(5_000, seed=2))
    with source.open("w", encoding="utf-8") as stream:
        while stream.tell() < args.mib * 2**20:
            stream.write(block)
    size = source.stat().st_size / 2**20
    records = sum(1 for _ in source.open("rb"))
    print(f"input: {size:.0f} MiB, {records} records")
    streamed = peak_of(
        [sys.executable, "-m", "mlpack", "predict", str(model_path), "--input", str(source), "--on-error", "skip"]
    )
    print(f"streamed:   peak RSS {streamed[0]:7.0f} MiB, {streamed[1]:6.1f} s ({records / streamed[1]:,.0f} records/s)")
    whole = peak_of([sys.executable, "-c", READ_WHOLE, str(model_path), str(source)])
    print(f"read whole: peak RSS {whole[0]:7.0f} MiB, {whole[1]:6.1f} s")
    print(f"streamed / read whole peak memory = {streamed[0] / whole[0]:.3f}")
    if not args.keep:
        for path in folder.iterdir():
            path.unlink()
        os.rmdir(folder)
    return 0 if streamed[0] < 300 else 1


if __name__ == "__main__":
    raise SystemExit(main())
