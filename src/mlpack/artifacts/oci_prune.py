"""What the model's runtime never loads, taken out of the image's dependency layer, and said where it was.

onnxruntime's and numpy's wheels carry more than a model server runs: onnxruntime's C API library (the
Python binding, onnxruntime_pybind11_state, links none of it: it is self-contained, its NEEDED entries
name only libc, libstdc++ and the like), its offline tools (model conversion, quantization,
transformer optimisation), numpy's build tools (f2py, distutils, its C headers and static library),
both test suites and type stubs. Taking them out is a third of the layer.

The pruning is deterministic (fixed rules, applied to RECORD's list in its order), and the layer stays
honest about it: every file taken out leaves its distribution's RECORD (RECORD lists what is there),
and the distribution's dist-info gains PRUNED.json naming the rules and every file taken out with its
size, itself listed in RECORD. The image's SBOM reads that file from the layer (inventory.py), and the
image carries the rules as the label io.mlpack.pruned. tests/test_oci_prune.py runs the model's
predict from the pruned layers, tests/test_oci.py its server in a container.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from fnmatch import fnmatchcase
from pathlib import Path

from packaging.utils import canonicalize_name

PRUNED_FILE = "PRUNED.json"
_EVERYWHERE = ("*/tests/*", "*.pyi", "*.pxd")  # test suites, type stubs, Cython declarations
# Distribution (canonical name) → (patterns on RECORD's paths, why). fnmatch: `*` crosses folders.
RULES: dict[str, tuple[tuple[str, ...], str]] = {
    "onnxruntime": (
        (
            "onnxruntime/capi/libonnxruntime.so*",
            "onnxruntime/tools/*",
            "onnxruntime/quantization/*",
            "onnxruntime/transformers/*",
            *_EVERYWHERE,
        ),
        "the C API library (the Python binding links none of it), the offline model tools, tests and stubs",
    ),
    "numpy": (
        (
            "numpy/f2py/*",
            "numpy/distutils/*",
            "numpy/_core/include/*",
            "numpy/_core/lib/*",
            "numpy/_pyinstaller/*",
            *_EVERYWHERE,
        ),
        "the build tools (f2py, distutils, C headers, the static npymath), tests and stubs",
    ),
}
LABEL = "io.mlpack.pruned"


def label() -> str:
    """The image label: the rules, by distribution (what was taken out, file by file, is in the layer)."""
    rules = {name: {"patterns": list(patterns), "why": why} for name, (patterns, why) in RULES.items()}
    return json.dumps(rules, sort_keys=True, separators=(",", ":"))


def _distribution(dist_info: Path) -> str:
    for line in (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Name:"):
            return str(canonicalize_name(line.partition(":")[2].strip()))
        if not line.strip():
            break
    return str(canonicalize_name(dist_info.name.removesuffix(".dist-info").rpartition("-")[0]))


def prune(site: Path) -> dict[str, int]:
    """Take RULES' files out of the installed distributions in `site`; returns {distribution: bytes taken out}."""
    taken: dict[str, int] = {}
    for record in sorted(site.glob("*.dist-info/RECORD")):
        name = _distribution(record.parent)
        if name not in RULES:
            continue
        patterns, why = RULES[name]
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        kept: list[str] = []
        removed: list[tuple[str, int]] = []
        for line in lines:
            path = next(csv.reader([line]), [""])[0]
            target = site / path
            if path and any(fnmatchcase(path, p) for p in patterns) and target.is_file() and site in target.parents:
                removed.append((path, target.stat().st_size))
                target.unlink()
            else:
                kept.append(line)
        if not removed:
            continue
        for path, _ in removed:  # the folders the rules emptied
            folder = (site / path).parent
            while folder != site and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        note = {"by": "mlpack", "why": why, "rules": list(patterns), "files": dict(removed)}
        data = (json.dumps(note, indent=1, sort_keys=True) + "\n").encode("utf-8")
        (record.parent / PRUNED_FILE).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        own = f"{record.parent.name}/RECORD,"
        entry = f"{record.parent.name}/{PRUNED_FILE},sha256={digest},{len(data)}\n"
        at = next((i for i, line in enumerate(kept) if line.startswith(own)), len(kept))
        record.write_text("".join([*kept[:at], entry, *kept[at:]]), encoding="utf-8")
        taken[name] = sum(size for _, size in removed)
    return taken
