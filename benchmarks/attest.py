"""What the SBOM, the provenance and the signatures cost a build, against the packaging they follow.

Each round packages the same trained model (wheel, sdist, .onnx, card: `write_artifacts`) and then
attests it (`attest_build`: SBOM, provenance, and with a key the model-signing signature and the
DSSE envelope), interleaved, unsigned / ECDSA P-256 / Ed25519 in turn, in one process after one
warm-up (the libraries' imports are paid once, as a build pays them once). It also times
`mlpack verify` of the wheel with the key. Prints medians and the ratio attest / package.

    python benchmarks/attest.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mlpack.artifacts import attest  # noqa: E402
from mlpack.artifacts.dist import write_report  # noqa: E402
from mlpack.artifacts.verify import verify  # noqa: E402
from mlpack.build import write_artifacts  # noqa: E402
from tests.helpers.attested import key_pair  # noqa: E402
from tests.helpers.documents import subscribers  # noqa: E402
from tests.helpers.training import config_for, export  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlpack-bench-attest-"))
    try:
        keys = {kind: key_pair(root, kind) for kind in ("ecdsa", "ed25519")}
        (root / "mlpack.toml").write_text("# benchmark\n", encoding="utf-8")
        base = config_for("sklearn.ensemble.RandomForestClassifier", "classification", {"n_estimators": 100})
        exported = export(base, subscribers(1000))
        configs = {"unsigned": dataclasses.replace(base, path=root / "mlpack.toml", project_dir=root)}
        for kind, (private, _) in keys.items():
            signed = config_for(
                "sklearn.ensemble.RandomForestClassifier",
                "classification",
                {"n_estimators": 100},
                sign={"key_file": str(private)},
            )
            configs[kind] = dataclasses.replace(signed, path=root / "mlpack.toml", project_dir=root)
        times: dict[str, list[float]] = {"package": [], **{f"attest {k}": [] for k in configs}, "verify": []}
        for round_number in range(args.rounds + 1):  # round 0 warms the imports up and is not counted
            for kind, config in configs.items():
                out = root / f"dist-{round_number}-{kind}"
                started = time.perf_counter()
                result = write_artifacts(config, exported, out)
                packaged = time.perf_counter()
                attest.attest_build(config, result, lambda _m: None)
                write_report(result.artifacts["report"], result.report)  # as outputs.write_artifacts does
                attested = time.perf_counter()
                if round_number == 0:
                    continue
                times["package"].append(packaged - started)
                times[f"attest {kind}"].append(attested - packaged)
                if kind == "ecdsa":
                    began = time.perf_counter()
                    verify(result.artifacts["wheel"], key=keys["ecdsa"][1])
                    times["verify"].append(time.perf_counter() - began)
        package = statistics.median(times["package"])
        sizes = {path.name: path.stat().st_size for path in (root / "dist-1-ecdsa").iterdir()}
        print(f"{args.rounds} rounds, 100-tree forest on 1000 documents, medians:")
        for name, values in times.items():
            median = statistics.median(values)
            ratio = "" if name == "package" else f"   {median / package:.2f} x package"
            print(f"  {name:<18} {median:6.3f} s{ratio}")
        for name, size in sorted(sizes.items()):
            if name.endswith((".cdx.json", ".provenance.json", ".dsse.json", ".model.sig", ".whl")):
                print(f"  {name:<44} {size / 1024:8.1f} KiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
