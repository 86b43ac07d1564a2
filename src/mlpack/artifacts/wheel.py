"""The model wheel: render `packaging/wheel`, build wheel and sdist with PyPA `build`, `twine check`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import build
import pyproject_hooks

from mlpack import runtime
from mlpack.artifacts import markdown
from mlpack.errors import ExternalError
from mlpack.redaction import child_environment
from mlpack.runtime import FeatureInfo, Metadata


def packaging_dir() -> Path:
    """The templates: inside an installed mlpack, or the repository's `packaging/` in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_packaging", here.parent.parent / "packaging"):
        if (candidate / "wheel").is_dir():
            return candidate
    raise ExternalError("mlpack's packaging templates are missing from this installation")


@dataclass(frozen=True)
class Distributions:
    wheel: Path
    sdist: Path


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _markdown_table(rows: Sequence[tuple[str, ...]]) -> str:
    # The header and its rule are in the template; a '|' inside a cell must not split it.
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |" for cells in rows)


def _example_record(metadata: Metadata) -> str:
    """Every feature, nested as in the source documents, with placeholder values."""
    example: dict[str, Any] = {}
    for feature in metadata["features"]:
        *parents, leaf = feature["name"].split(".")
        node = example
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = 0.0 if feature["kind"] == "numeric" else "a category"
    # In a fenced code block: a backtick in a field name must not close the fence (\u0060 is JSON too).
    return json.dumps(example).replace("`", "\\u0060")


def _test_share(evaluation: dict[str, Any]) -> str:
    """How the test split was chosen, to read in "Measured on a held-out ... of the data"."""
    share, kind = f"{evaluation['test_size']:.0%}", evaluation.get("split", "random")
    if kind == "time":
        return f"newest {share} (by {markdown.code(evaluation['split_field'])})"
    if kind == "group":
        return f"{share} of the {markdown.code(evaluation['split_field'])} groups"
    if kind == "filter":
        return f"part ({markdown.code(json.dumps(evaluation['test_filter'], ensure_ascii=False))})"
    return share


def _feature_row(feature: FeatureInfo) -> tuple[str, ...]:
    """One row of the card's inputs table: what a missing value becomes, or the categories with counts."""
    if feature["kind"] == "numeric":
        imputed = feature.get("imputed")
        known = f"imputed {imputed:.6g}" if imputed is not None else ""
    else:
        categories = feature.get("categories", {})
        shown = ", ".join(f"{markdown.text(name)} ({count})" for name, count in list(categories.items())[:20])
        more = f", … {len(categories) - 20} more" if len(categories) > 20 else ""
        known = shown + more + ("; missing is its own category" if categories else "")
    missing = str(feature["missing"]) if "missing" in feature else ""
    name, column = markdown.code(feature["name"]), markdown.code(feature["input"])
    return (name, feature["kind"], column, missing, known)


def _class_table(metadata: Metadata) -> str:
    """Per class its share of the training split (classification)."""
    balance = metadata.get("class_balance")
    if not balance:
        return ""
    rows = [(markdown.code(entry["label"]), str(entry["count"]), f"{entry['share']:.1%}") for entry in balance]
    header = "\nClass balance in the training split:\n\n| class | documents | share |\n|---|---|---|\n"
    return header + _markdown_table(rows) + "\n"


def render_model_card(metadata: Metadata, template: str, card_tables: str = "") -> str:
    data, parity, import_name = metadata["data"], metadata["parity"], metadata["import_name"]
    classes = metadata.get("classes")
    versions = ", ".join(f"{k} {v}" for k, v in metadata["versions"].items())
    return Template(template).substitute(
        name=metadata["name"],
        version=metadata["version"],
        description=markdown.text(metadata.get("description") or f"A {metadata['task']} model."),
        task=metadata["task"],
        mlpack_version=metadata["versions"]["mlpack"],
        created=metadata["created"],
        import_name=import_name,
        example=_example_record(metadata),
        proba_usage=(
            f"\n```python\n{import_name}.predict_proba(record)"
            f"   # probabilities, in the order of {import_name}.classes\n```\n"
            if classes is not None and metadata.get("probabilities", True)
            else ""
        ),
        features_table=_markdown_table([_feature_row(f) for f in metadata["features"]]),
        class_table=_class_table(metadata),
        target=markdown.code(metadata["target"]),
        classes_line=f"; classes: {', '.join(markdown.code(c) for c in classes)}" if classes is not None else "",
        test_share=_test_share(metadata["evaluation"]),
        test_rows=parity.get("test_rows", parity["rows"]),
        parity_train_rows=parity.get("train_rows", 0),
        metrics_table=_markdown_table(
            [(markdown.text(name), f"{value:.4f}") for name, value in metadata["metrics"].items()]
        ),
        parity_diff=f"{parity['max_abs_diff']:.3g}",
        parity_agreement=f"{parity['label_agreement']:.2%}",
        source=markdown.code(f"{data['database']}.{data['collection']}"),
        filter=markdown.code(json.dumps(data["filter"], ensure_ascii=False)),
        rows=data["rows"],
        fingerprint=data["sha256"],
        estimator=markdown.code(metadata["estimator"]["class"]),
        params=markdown.code(json.dumps(metadata["estimator"]["params"], sort_keys=True, ensure_ascii=False)),
        versions_line=versions,
        card_tables=card_tables,
    )


def render_project(
    stage: Path, metadata: Metadata, onnx_bytes: bytes, config_text: str, *, card_tables: str = ""
) -> Path:
    """Write the model package's source tree under `stage`; return its folder."""
    templates = packaging_dir() / "wheel"
    project = stage / f"{metadata['name']}-{metadata['version']}"
    package = project / metadata["import_name"]
    package.mkdir(parents=True)
    pyproject = Template((templates / "pyproject.toml.in").read_text(encoding="utf-8")).substitute(
        mlpack_version=metadata["versions"]["mlpack"],
        name=_toml_string(metadata["name"]),
        version=_toml_string(metadata["version"]),
        description=_toml_string(metadata.get("description") or f"{metadata['name']}: a {metadata['task']} model"),
        import_name=_toml_string(metadata["import_name"]),
    )
    (project / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    card = render_model_card(metadata, (templates / "README.md.in").read_text(encoding="utf-8"), card_tables)
    (project / "README.md").write_text(card, encoding="utf-8")
    for source in sorted((templates / "package").iterdir()):
        if source.is_file() and source.suffix == ".py":
            shutil.copyfile(source, package / source.name)
    no_caches = shutil.ignore_patterns("__pycache__")
    # The runtime whole, its server (serving/) and drift statistics included: one folder, one import root.
    shutil.copytree(Path(runtime.__file__).parent, package / "_runtime", ignore=no_caches)
    (package / "model.onnx").write_bytes(onnx_bytes)
    (package / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (package / "mlpack.toml").write_text(config_text, encoding="utf-8")
    return project


def _runner(source_date_epoch: int) -> pyproject_hooks.SubprocessRunner:
    def run(cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None) -> None:
        env = child_environment({**(extra_environ or {}), "SOURCE_DATE_EPOCH": str(source_date_epoch)})
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ExternalError("building the model package failed", details=(result.stdout + result.stderr)[-4000:])

    return run


def build_distributions(project: Path, out_dir: Path, *, source_date_epoch: int) -> Distributions:
    """Wheel and sdist with PyPA `build`, without isolation: offline, and hatchling is already here."""
    builder = build.ProjectBuilder(project, python_executable=sys.executable, runner=_runner(source_date_epoch))
    missing = builder.check_dependencies("wheel")
    if missing:
        needed = ", ".join(sorted(next(iter(chain)) for chain in missing))
        raise ExternalError(f"building the model package needs {needed}: pip install {needed}")
    try:
        sdist = Path(builder.build("sdist", out_dir))
        wheel = Path(builder.build("wheel", out_dir))
    except build.BuildBackendException as exc:
        raise ExternalError(f"building the model package failed: {exc}") from None
    return Distributions(wheel=wheel, sdist=sdist)


def twine_check(paths: list[Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        env=child_environment(),
    )
    if result.returncode != 0:
        raise ExternalError("twine check failed on the model package", details=(result.stdout + result.stderr).strip())
