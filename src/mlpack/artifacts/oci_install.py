"""The two trees the image with no engine adds to its base: the dependencies, then the model.

Both are `pip install --target` for the image's Python and platform, run here (nothing runs inside
the image). The dependencies (the wheel's own requirements and its server's pymongo, held to the
onnxruntime and numpy the parity check ran with) go into /opt/model/deps, the model wheel alone
(`--no-deps`) into /opt/model/site: a retrained model is a new top layer on the very same dependency layer, which a
registry or an engine already holds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import BytesHeaderParser
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from packaging.requirements import Requirement

from mlpack.artifacts.image import SERVER_EXTRA, ImageTarget
from mlpack.artifacts.oci_prune import prune
from mlpack.errors import ConfigError, ExternalError
from mlpack.redaction import child_environment

DEPS = "opt/model/deps"  # the dependency layer's one folder
SITE = "opt/model/site"  # the model layer's one folder: first on PYTHONPATH


def image_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist lines that the image installs: those without an extra (what the model
    needs to run) and those of its server extra (pymongo, for the inference log), without their marker.
    `pandas` stays out: the server never loads it."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            headers = BytesHeaderParser().parsebytes(archive.read(name))
    except (OSError, zipfile.BadZipFile, StopIteration) as exc:
        raise ConfigError(f"{wheel} is not a readable wheel: {type(exc).__name__}") from None
    found = []
    for line in headers.get_all("Requires-Dist", []):
        requirement = Requirement(line)
        if requirement.marker is None or "extra" not in str(requirement.marker):
            found.append(line.strip())  # any other marker is pip's to judge for the image's Python
        elif requirement.marker.evaluate({"extra": SERVER_EXTRA}):
            requirement.marker = None
            found.append(str(requirement))
    return sorted(found)


def _pip_install(
    target_dir: Path, what: list[str], target: ImageTarget, *, extra: list[str], find_links: str, offline: bool
) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    command += ["--no-warn-script-location", "--target", str(target_dir), *extra, *target.pip_platform_args()]
    if find_links:
        command += (["--no-index"] if offline else []) + ["--find-links", find_links]
    env = child_environment({"PYTHONDONTWRITEBYTECODE": "1"})
    result = subprocess.run([*command, *what], capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise ExternalError(
            f"could not install {' '.join(Path(w).name for w in what)} for Python {target.python} on {target.arch} "
            "(pip install --target needs the package index, its cache or [image].find_links)",
            details=result.stderr[-3000:],
        )
    _clean(target_dir)


def _clean(site: Path) -> None:
    """No bytecode, no console scripts (they name this machine's Python), no path of this machine."""
    shutil.rmtree(site / "bin", ignore_errors=True)
    for path in sorted(site.rglob("*"), reverse=True):
        if path.name == "__pycache__" and path.is_dir():
            shutil.rmtree(path)
        elif path.suffix == ".pyc" or (path.name == "direct_url.json" and path.parent.suffix == ".dist-info"):
            path.unlink()  # direct_url.json holds the wheel's path on this machine
    for record in sorted(site.glob("*.dist-info/RECORD")):  # nor may RECORD list what was removed
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        gone = ("bin/", "../")
        kept = [line for line in lines if not line.startswith(gone) and "/direct_url.json," not in line]
        record.write_text("".join(kept), encoding="utf-8")


def install_dependencies(
    stage: Path, requirements: list[str], target: ImageTarget, *, pins: dict[str, str], find_links: str, offline: bool
) -> Path:
    """stage/deps/opt/model/deps: the requirements, held to `pins`; returns the layer's root."""
    root = stage / "deps"
    (root / DEPS).mkdir(parents=True)
    constraints = stage / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()), encoding="utf-8")
    try:
        if requirements:
            extra = ["--constraint", str(constraints)]
            _pip_install(root / DEPS, requirements, target, extra=extra, find_links=find_links, offline=offline)
            prune(root / DEPS)  # what the model's runtime never loads (oci_prune.py)
    finally:
        constraints.unlink()
    return root


def install_model(stage: Path, wheel: Path, target: ImageTarget) -> Path:
    """stage/model/opt/model/site: the model wheel alone; returns the layer's root.

    Installed in this process by the PyPA's `installer` (what pip itself does for a wheel, less pip's
    start-up, most of a retrain's time): the model wheel is mlpack's own, pure Python and has no
    dependency to resolve (`target` only names the image's Python, which a pure wheel does not care for).
    Its scripts go to bin/, which _clean takes out with pip's; INSTALLER and REQUESTED as pip writes them."""
    root = stage / "model"
    site = root / SITE
    site.mkdir(parents=True)
    schemes = {"purelib": site, "platlib": site, "headers": site / "include", "scripts": site / "bin", "data": site}
    destination = SchemeDictionaryDestination(
        {name: str(path) for name, path in schemes.items()},
        interpreter=f"/usr/bin/env python{target.python}",
        script_kind="posix",
    )
    try:
        with WheelFile.open(wheel) as source:
            install(source, destination, {"INSTALLER": b"mlpack\n", "REQUESTED": b""})
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ExternalError(f"could not install {wheel.name} into the image's model layer: {exc}") from None
    _clean(site)
    return root
