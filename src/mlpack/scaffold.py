"""`mlpack init`: scaffold a model project from the templates in packaging/project; never overwrites."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
from pathlib import Path
from string import Template

from mlpack import names
from mlpack.artifacts.wheel import packaging_dir
from mlpack.config import ModelSection
from mlpack.errors import ConfigError

DISTRIBUTION = "mlpack-onnx"


def _running_mlpack() -> dict[str, str]:
    """How a new project installs the mlpack that scaffolded it: its version from the package
    index when the index has it, else this very installation (PEP 610's direct_url.json says
    where a local or editable install came from), so the printed next step works before any
    release is published."""
    from importlib.metadata import PackageNotFoundError, distribution

    from mlpack import __version__

    local = ""
    try:
        direct = distribution(DISTRIBUTION).read_text("direct_url.json")
    except PackageNotFoundError:  # running from a checkout on sys.path: that checkout is the source
        direct = json.dumps({"url": Path(__file__).resolve().parents[2].as_uri(), "dir_info": {}})
    if direct:
        try:
            url = json.loads(direct).get("url", "")
        except ValueError:
            url = ""
        if url.startswith("file://"):
            local = f"{DISTRIBUTION}[embedded] @ {url}"
    return {"mlpack_version": __version__, "mlpack_local": shlex.quote(local)}  # a shell word in init_setup.sh


def init_project(name: str, parent: str | Path = ".") -> Path:
    """Scaffold a model project from packaging/project; never overwrites anything."""
    problem = names.package_name(name)
    if problem is not None:
        raise ConfigError(f"the model name {name[:80]!r} {problem}")
    target = Path(parent) / name
    if target.exists():
        raise ConfigError(f"{target} already exists: choose another name or folder")
    import_name = ModelSection(name=name, task="classification").import_name
    values = {"name": name, "import_name": import_name, **_running_mlpack()}
    template_root = packaging_dir() / "project"
    staging = target.with_name(f".{name}.mlpack-init")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for source in sorted(template_root.rglob("*")):
            if source.is_dir() or "__pycache__" in source.parts:
                continue
            relative = str(source.relative_to(template_root)).replace("__import__", import_name)
            relative = re.sub(r"(^|/)gitignore\.in$", r"\1.gitignore", relative)
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if relative.endswith(".in"):
                destination = destination.with_suffix("")
                text = Template(source.read_text(encoding="utf-8")).substitute(values)
                destination.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(source, destination)
            if destination.suffix == ".sh":
                destination.chmod(destination.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
